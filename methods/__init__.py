"""The algorithms: one module per method family, sharing `methods.nets` and `methods.losses`.

Importing this package is cheap: the registry names every method without importing torch or a method module;
`get(name)` imports the one asked for.
"""

from methods.registry import build, get, label, names

__all__ = ["build", "get", "label", "names"]
