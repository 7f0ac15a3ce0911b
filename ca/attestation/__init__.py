"""How a caller proves which identity it may get: join tokens, Kubernetes tokens."""
