"""The data module every task uses: resumable step sampling for training, each image once across ranks for eval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import Config
from ..errors import ConfigError
from .sampling import StepBatchSampler, StepDataLoader


class SeededView(Dataset):
    """Items are ``(index, seed)``: the augmentation of a sample is fixed by its position in the data stream."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, seed = item
        return self.dataset.transform(self.dataset.load_raw(index), rng=seed)


class ShardSampler(Sampler[tuple[int, bool]]):
    """Evaluation order split across ranks; items are ``(index, counted)``.

    Every rank gets the same number of items (DDP's forward is a collective, so no rank may run out early);
    the padding repeats an image with ``counted=False`` and the metrics skip it, so each image counts once.
    """

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        per_rank = -(-n // world_size)
        own = [(i, True) for i in range(rank, n, world_size)]
        self.items = own + [(0, False)] * (per_rank - len(own))

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


class EvalView(Dataset):
    """Items ``(index, counted)`` -> the sample, with ``meta["counted"]`` telling the metrics whether to use it."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, bool]) -> dict[str, Any]:
        index, counted = item
        sample = self.dataset[index]
        sample["meta"] = {**sample["meta"], "counted": counted}
        return sample


def test_split_of(cfg: Config) -> str:
    """The split ``ivtune eval`` scores: ``data.test_split``, else ``data.val_split``."""
    split = cfg.data.test_split or cfg.data.val_split
    if split is None:
        raise ConfigError("data.test_split and data.val_split are both null: name the split to evaluate.")
    return split


class PairedDataModule(pl.LightningDataModule):
    """Datasets built on demand by ``build_dataset(cfg, split, train)`` and batched by ``collate_fn``."""

    def __init__(self, cfg: Config, build_dataset: Callable[..., Any], collate_fn: Callable[[list], Any]) -> None:
        super().__init__()
        self.cfg = cfg
        self.build_dataset = build_dataset
        self.collate_fn = collate_fn
        self.datasets: dict[str, Any] = {}

    def dataset(self, split: str, train: bool = False):
        key = f"{split}/{'train' if train else 'eval'}"
        if key not in self.datasets:
            self.datasets[key] = self.build_dataset(self.cfg, split, train)
        return self.datasets[key]

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0  # restored when resuming

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset(self.cfg.data.train_split, train=True)
        rank, world = self._rank_world()
        t, d = self.cfg.train, self.cfg.data
        sampler = StepBatchSampler(len(ds), d.batch_size, total_steps=t.max_steps, seed=t.seed, rank=rank,
                                   world_size=world, start_step=self._global_step())
        return StepDataLoader(SeededView(ds), batch_sampler=sampler, collate_fn=self.collate_fn,
                              num_workers=d.num_workers, persistent_workers=d.num_workers > 0,
                              step_fn=self._global_step)

    def eval_dataloader(self, split: str) -> DataLoader:
        ds = self.dataset(split)
        rank, world = self._rank_world()
        return DataLoader(EvalView(ds), batch_size=self.cfg.data.eval_batch_size,
                          sampler=ShardSampler(len(ds), rank, world), collate_fn=self.collate_fn,
                          num_workers=self.cfg.data.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader(self.cfg.data.val_split) if self.cfg.data.val_split else []

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader(test_split_of(self.cfg))
