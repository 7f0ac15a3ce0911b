"""The in-process signing authority lives with the benchmarks (which need it too)."""

from bench._authority import LocalAuthority

__all__ = ["LocalAuthority"]
