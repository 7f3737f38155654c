"""The training batches of one epoch, in the loop's thread or in DataLoader worker processes.

The order is the pure function of (seed, epoch, position) the loop has always used: `epoch_order` shuffles
the item indices (or the dataset orders its own stream: then the order is 0..n-1), batch `pos` takes
`order[pos*bs:(pos+1)*bs]`, and the dataset draws each item's crop, flip
and unpaired B from a private generator seeded by (seed, epoch, index). `train.num_workers > 0` moves the
decoding and resizing into torch DataLoader workers (pinned memory on CUDA, prefetch) with a batch sampler
that yields exactly those index lists from a given position on, so batches are bitwise identical to
`num_workers = 0` and a run resumed mid-epoch continues with the same next batch.

The DataLoader is given its own generator: by default creating its iterator draws a base seed from the global
torch RNG, which the methods use too (patch ids, flips), and would change the run.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

#: Batches each worker prepares ahead of the training step.
PREFETCH_FACTOR = 2


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of training items for an epoch: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, keep lists of everything else."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return out


def batch_indices(order: np.ndarray, batch_size: int, pos: int) -> list[int]:
    """The item indices of batch `pos` of an epoch."""
    return [int(i) for i in order[pos * batch_size:(pos + 1) * batch_size]]


class EpochBatchSampler(Sampler[list[int]]):
    """Index lists of batches `start .. n_batches-1` of one epoch's order."""

    def __init__(self, order: np.ndarray, batch_size: int, n_batches: int, start: int = 0) -> None:
        self.order, self.batch_size, self.n_batches, self.start = order, batch_size, n_batches, start

    def __iter__(self) -> Iterator[list[int]]:
        for pos in range(self.start, self.n_batches):
            yield batch_indices(self.order, self.batch_size, pos)

    def __len__(self) -> int:
        return max(0, self.n_batches - self.start)


def epoch_batches(ds, order: np.ndarray, batch_size: int, n_batches: int, start: int = 0, *,
                  num_workers: int = 0, pin_memory: bool = False, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Batches `start ..` of an epoch's `order` (after `ds.set_epoch(epoch)`), decoded here or by workers.

    `seed` seeds the DataLoader's own generator (nothing the items use: they draw from (seed, epoch, index))."""
    sampler = EpochBatchSampler(order, batch_size, n_batches, start)
    if num_workers <= 0:
        for idx in sampler:
            yield collate([ds[i] for i in idx])
        return
    # Fresh (non-persistent) workers per epoch: each gets a copy of the dataset with this epoch selected.
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                        pin_memory=pin_memory, prefetch_factor=PREFETCH_FACTOR,
                        generator=torch.Generator().manual_seed(seed))
    it = iter(loader)
    try:
        yield from it
    finally:
        del it  # stops the workers now, also when the loop leaves the epoch early
