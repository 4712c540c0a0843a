"""The stream of training batches, addressable by global batch index (for exact resume).

Batch ``i`` belongs to epoch ``i // batches_per_epoch``; each epoch's order is a
``DistributedSampler`` permutation (seeded by seed + epoch; one shard per process) and the
dataset's augmentation is keyed by the epoch, so batch ``i`` is the same whether or not the
run was interrupted before it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler

from unseg.data.interactive import InteractiveDataset

Batch = dict[str, torch.Tensor]


def collate(items: list[Batch]) -> Batch:
    """Stack a list of dataset items into a batch."""
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


class BatchStream:
    """Endless batches of ``batch_size`` (drop-last) from ``dataset``, shard ``rank`` of ``world_size``.

    ``num_workers`` > 0: a DataLoader's worker processes decode and augment ahead of the loop;
    ``pin_memory`` (for a CUDA device): batches land in page-locked memory, so the trainer's
    ``non_blocking`` copies overlap with compute. Neither changes the batches.
    """

    def __init__(self, dataset: InteractiveDataset, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 0, pin_memory: bool = False) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                          drop_last=True)
        if len(self.sampler) < batch_size:
            raise ValueError(f"only {len(self.sampler)} training objects per process, fewer than batch size "
                             f"{batch_size}; add data or lower schedule.batch_size")

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler) // self.batch_size

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Dataset indices of every batch of ``epoch`` (this process's shard)."""
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.batches_per_epoch)]

    def iterate(self, start: int = 0) -> Iterator[tuple[int, Batch]]:
        """``(global batch index, batch)`` from batch ``start`` on, forever."""
        index = start
        while True:
            epoch, position = divmod(index, self.batches_per_epoch)
            self.dataset.set_epoch(epoch)
            batches = self.epoch_batches(epoch)[position:]
            if self.num_workers > 0 or self.pin_memory:
                loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                                    collate_fn=collate, pin_memory=self.pin_memory)
                source = iter(loader)
            else:
                source = (collate([self.dataset[i] for i in indices]) for indices in batches)
            for batch in source:
                yield index, batch
                index += 1
