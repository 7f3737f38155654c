"""Shared losses: adversarial (gan.py), contrastive (patchnce.py)."""
