"""A batch sampler whose batches are a pure function of (seed, global step), so a resumed run sees the same data.

Training is one long Lightning epoch of ``total_steps`` batches. The index stream is a sequence of seeded
permutations of the dataset; global batch ``b`` takes items ``[b*G, (b+1)*G)`` of it (``G`` = per-rank batch x
world size) and rank ``r`` its ``r``-th slice, so one process with batch ``G`` and ``k`` processes with ``G / k``
see the same samples. A resumed run starts the stream at its restored global step. Each item also gets its own
augmentation seed, derived from its position in the stream, so augmentations match too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields lists of ``(dataset_index, augmentation_seed)`` for global steps ``[start_step, total_steps)``.

    ``len()`` is ``total_steps`` on purpose: Lightning keeps counting batches of the interrupted epoch on resume.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        total_steps: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("the training set is empty: check data.root, data.train_split and `ivtune data check`")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.total_steps = total_steps
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step

    def _permutation(self, cycle: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + cycle)
        return torch.randperm(self.num_samples, generator=g)

    def batch(self, step: int, cache: dict[int, torch.Tensor] | None = None) -> list[tuple[int, int]]:
        """This rank's ``(index, augmentation seed)`` list for global step ``step``."""
        cache = {} if cache is None else cache
        start = step * self.batch_size * self.world_size + self.rank * self.batch_size
        out = []
        for pos in range(start, start + self.batch_size):
            cycle, offset = divmod(pos, self.num_samples)
            if cycle not in cache:
                cache.clear()  # positions only grow: one permutation in memory at a time is enough
                cache[cycle] = self._permutation(cycle)
            out.append((int(cache[cycle][offset]), (self.seed * 7_919 + pos) % (2**31)))
        return out

    def __len__(self) -> int:
        return self.total_steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        cache: dict[int, torch.Tensor] = {}
        for step in range(self.start_step, self.total_steps):
            yield self.batch(step, cache)


class StepDataLoader(DataLoader):
    """A DataLoader over a :class:`StepBatchSampler` that Lightning recognises as resumable.

    Lightning stores ``state_dict()`` in the checkpoint and hands it back before iterating a resumed run; the
    state is just the global step, from which the sampler rebuilds the stream.
    """

    def __init__(self, *args: Any, step_fn: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._step_fn = step_fn

    def state_dict(self) -> dict[str, int]:
        return {"global_step": int(self._step_fn())}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.start_step = int(state["global_step"])
