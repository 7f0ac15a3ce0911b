"""Wire adapters: they map proxy requests to :class:`authz.decider.RequestFacts` and back."""
