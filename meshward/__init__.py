"""meshward: the zero-trust security layer of a service mesh (CLI and shared plumbing)."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("meshward")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+local"
