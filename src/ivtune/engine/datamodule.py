"""The data module every task uses: resumable step sampling for training, each image once across ranks for eval.

Sensor faults (docs/METHOD.md section 14) enter here, on the raw sample, before the task's transform:

- training (``train.misalign``, ``train.modality_dropout``): :class:`TrainingFaults`, drawn from generators that
  depend only on the item's augmentation seed (its position in the step stream), so a resumed run sees the same
  faults as an uninterrupted one;
- evaluation (``ivtune eval --degrade``): :class:`ivtune.data.degrade.DegradedTransform` around the evaluation
  transform, seeded by (evaluation seed, sample name, degradation kind).

Both use one missing-modality convention, the normalisation mean of the run's ``data`` section
(:func:`fill_means_of`), flagged in ``meta["missing"]`` and zeroed exactly after ``Normalize``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import Config
from ..data.degrade import (
    DEFAULT_FILL_MEANS,
    Degradation,
    DegradedTransform,
    apply_missing_after_normalize,
    modality_dropout,
    normalization_means,
    random_misalign,
    sample_rng,
)
from ..data.transforms import IMAGENET_MEAN
from ..errors import ConfigError
from .sampling import StepBatchSampler, StepDataLoader


def fill_means_of(cfg: Config) -> dict[str, tuple[float, ...]]:
    """The missing-modality fill means of a run: the normalisation of its ``data`` section.

    Every task's transforms normalise VIS with the ImageNet statistics and IR by ``data.ir_norm`` /
    ``data.ir_mean``; the fill is the input that normalisation maps to 0 (:mod:`ivtune.data.degrade`).
    """
    d = cfg.data
    return normalization_means(IMAGENET_MEAN, d.ir_norm, d.ir_mean if d.ir_norm == "meanstd" else None)


@dataclass(frozen=True)
class TrainingFaults:
    """Training-time sensor faults applied to the raw sample (``train.misalign``, then ``train.modality_dropout``).

    Each fault draws from its own generator, ``sample_rng(augmentation seed, "train", fault)``, so the faults of an
    item depend only on its position in the step stream (resume stays bit-identical), turning one fault on does not
    change the draws of the other, and neither touches the transform's own random stream.

    Attributes:
        modality_dropout: probability of dropping one modality (:func:`ivtune.data.degrade.modality_dropout`).
        misalign: largest random IR shift in pixels (:func:`ivtune.data.degrade.random_misalign`).
        fill_means: the run's normalisation means (:func:`fill_means_of`).
    """

    modality_dropout: float = 0.0
    misalign: int = 0
    fill_means: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_FILL_MEANS))

    @classmethod
    def from_config(cls, cfg: Config) -> TrainingFaults | None:
        """The faults ``cfg.train`` asks for, or None when both are off (the plain, unchanged sample path)."""
        t = cfg.train
        if not t.modality_dropout and not t.misalign:
            return None
        return cls(float(t.modality_dropout), int(t.misalign), fill_means_of(cfg))

    def __call__(self, sample: dict[str, Any], seed: int) -> dict[str, Any]:
        """The faulty raw sample of the item with augmentation seed ``seed``."""
        if self.misalign:
            sample = random_misalign(sample, self.misalign, sample_rng(seed, "train", "misalign"), self.fill_means)
        if self.modality_dropout:
            sample = modality_dropout(sample, self.modality_dropout, sample_rng(seed, "train", "modality_dropout"),
                                      self.fill_means)
        return sample


class SeededView(Dataset):
    """Items are ``(index, seed)``: the augmentation of a sample is fixed by its position in the data stream.

    With ``faults``, the raw sample is degraded first (from the same seed) and the missing modalities are zeroed
    after the transform, as in evaluation (:class:`ivtune.data.degrade.DegradedTransform`).
    """

    def __init__(self, dataset, faults: TrainingFaults | None = None) -> None:
        self.dataset = dataset
        self.faults = faults

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, seed = item
        raw = self.dataset.load_raw(index)
        if self.faults is None:
            return self.dataset.transform(raw, rng=seed)
        return apply_missing_after_normalize(self.dataset.transform(self.faults(raw, seed), rng=seed))


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
    """Datasets built on demand by ``build_dataset(cfg, split, train)`` and batched by ``collate_fn``.

    Args:
        cfg: the run config (``train.modality_dropout`` / ``train.misalign`` turn on :class:`TrainingFaults`).
        build_dataset: the task's dataset builder.
        collate_fn: the task's collate.
        degradation: a sensor fault applied to every evaluation sample (``ivtune eval --degrade``); None: clean.
        degrade_seed: the evaluation seed of random degradations.
    """

    def __init__(self, cfg: Config, build_dataset: Callable[..., Any], collate_fn: Callable[[list], Any],
                 degradation: Degradation | None = None, degrade_seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.build_dataset = build_dataset
        self.collate_fn = collate_fn
        self.degradation = degradation
        self.degrade_seed = degrade_seed
        self.datasets: dict[str, Any] = {}

    def dataset(self, split: str, train: bool = False):
        key = f"{split}/{'train' if train else 'eval'}"
        if key not in self.datasets:
            ds = self.build_dataset(self.cfg, split, train)
            if self.degradation is not None and not train:
                base = ds.transform if ds.transform is not None else ds.default_transform
                ds.transform = DegradedTransform(base, self.degradation, self.degrade_seed)
            self.datasets[key] = ds
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
        view = SeededView(ds, TrainingFaults.from_config(self.cfg))
        return StepDataLoader(view, batch_sampler=sampler, collate_fn=self.collate_fn,
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
