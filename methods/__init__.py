"""The algorithms: one module per method family, sharing `methods.nets` and `methods.losses`."""

from methods.registry import build, get, names

__all__ = ["build", "get", "names"]
