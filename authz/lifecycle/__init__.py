"""Policy lifecycle: versions, policy tests, replay and shadow evaluation, new repositories.

The policy sources and their activation gate live in :mod:`authz.sources`.
"""
