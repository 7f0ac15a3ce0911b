"""Wire adapters: they map proxy requests to :class:`authz.engine.decider.RequestFacts` and back."""
