"""Data order derived from ``(seed, epoch)`` alone, so training can resume at any step.

:class:`EpochBatchSampler` shuffles with a generator seeded by ``(seed, epoch)``, shards the order
across processes the way ``DistributedSampler`` does (padded by wrapping around, so every process
gets the same number of batches), and can start an epoch at a given step without reading the
batches it skips.

>>> s = EpochBatchSampler(10, batch_size=4, seed=1)
>>> s.set_epoch(0)
>>> batches = list(s)
>>> [len(b) for b in batches], sorted(i for b in batches for i in b) == list(range(10))
([4, 4, 2], True)
>>> s.set_epoch(0, start_step=1); list(s) == batches[1:]
True
>>> s.set_epoch(1); list(s) != batches  # a new order every epoch
True
>>> [len(list(EpochBatchSampler(10, batch_size=4, seed=1, rank=r, world_size=3))) for r in range(3)]
[1, 1, 1]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class EpochBatchSampler:
    """Batches of dataset indices for one epoch, for one process out of ``world_size``.

    ``shuffle=False`` keeps dataset order (validation); ``pad=False`` gives ranks uneven shares
    instead of repeating items (validation sums over ranks, so nothing may be counted twice).
    """

    def __init__(
        self,
        n_items: int,
        *,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ):
        if n_items < 1:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in 0..{world_size - 1}")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.shuffle, self.rank, self.world_size, self.pad = shuffle, rank, world_size, pad
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's order, and skip its first ``start_step`` batches (mid-epoch resume)."""
        self.epoch, self.start_step = epoch, start_step

    def indices(self) -> list[int]:
        """This process's share of the epoch's order (all of it, ignoring ``start_step``)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_items)
        else:
            order = np.arange(self.n_items)
        if self.pad and self.n_items % self.world_size:
            extra = self.world_size - self.n_items % self.world_size
            order = np.concatenate([order, np.resize(order, extra)])  # wrap around, like DistributedSampler
        return order[self.rank :: self.world_size].tolist()

    def steps_per_epoch(self) -> int:
        return -(-len(self.indices()) // self.batch_size)

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch() - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.indices()
        for start in range(self.start_step * self.batch_size, len(mine), self.batch_size):
            yield mine[start : start + self.batch_size]


class EpochKeys:
    """An :class:`EpochBatchSampler`'s batches as ``(epoch, index)`` keys, for :class:`EpochItems`.

    The epoch travels with every index, so DataLoader workers that outlive an epoch
    (``persistent_workers``) still read each item for the right epoch.
    """

    def __init__(self, sampler: EpochBatchSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.sampler.epoch
        for batch in self.sampler:
            yield [(epoch, i) for i in batch]


class EpochItems:
    """A dataset read by ``(epoch, index)`` keys: tells ``dataset.set_epoch`` (if it has one) of each
    new epoch before reading, in whichever process reads.

    >>> class Data:
    ...     def set_epoch(self, epoch): self.epoch = epoch
    ...     def __getitem__(self, i): return (self.epoch, i)
    >>> items = EpochItems(Data())
    >>> items[(0, 5)], items[(3, 1)]
    ((0, 5), (3, 1))
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        return self.dataset[index]
