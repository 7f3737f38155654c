"""Datasets: the registry of specs, loaders for paired/unpaired training and evaluation, the toy set.

    from bench.data import get_spec, dataset_names, load_pairs, load_domain, resolve_root
"""

from bench.data.datasets import ImageDataset, TranslationDataset, load_domain, load_pairs
from bench.data.registry import DatasetSpec, Download, dataset_names, get_spec
from bench.data.roots import cache_dir, resolve_root

__all__ = [
    "DatasetSpec", "Download", "ImageDataset", "TranslationDataset", "cache_dir", "dataset_names", "get_spec",
    "load_domain", "load_pairs", "resolve_root",
]
