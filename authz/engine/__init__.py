"""The pure core: an :class:`~authz.engine.model.AccessRequest` in, a ``Decision`` out.

No sockets, no Redis, no clock reads. :mod:`~authz.engine.request` maps the
wire to a request, :mod:`~authz.engine.evaluation` evaluates it against a
:mod:`~authz.engine.bundle`, :mod:`~authz.engine.decider` makes every failure
a deny.
"""
