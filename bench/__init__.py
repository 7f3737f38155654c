"""bench: the harness that trains, evaluates, tracks and tabulates image-to-image translation GANs."""

__version__ = "0.1.0"
