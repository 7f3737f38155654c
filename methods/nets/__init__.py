"""Shared networks: generators, discriminators, projection heads and their building blocks."""
