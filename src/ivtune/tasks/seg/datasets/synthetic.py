"""The in-memory synthetic scenes of :mod:`ivtune.data.scenes` with their label maps (no files, ``root`` unused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ....data.pairs import Transform
from ....data.scenes import SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SceneImages, SyntheticScenes
from ..dataset import PairedSegDataset


class SyntheticSegDataset(SceneImages, PairedSegDataset):
    """Synthetic pairs with their label maps; item ``i`` depends only on ``(seed, split, i)``.

    Args: as :class:`ivtune.data.scenes.SyntheticScenes`, plus ``transform`` as for :class:`PairedSegDataset`.
    """

    def __init__(self, num_samples: int, seed: int = 0, height: int = 256, width: int = 320,
                 night_fraction: float = 0.5, fog_fraction: float = 0.0, transform: Any = None,
                 split: str = "train") -> None:
        self.scenes = SyntheticScenes(num_samples, seed, height, width, night_fraction, fog_fraction, split)
        self.seed, self.split, self.height, self.width = self.scenes.seed, split, self.scenes.height, self.scenes.width
        super().__init__(self.scenes.records, SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, 255, transform, strict=True,
                         name=f"synthetic/{split}")

    def scene(self, index: int):
        return self.scenes.scene(index)

    def read_target(self, index: int) -> np.ndarray:
        return self.scenes.scene(index).mask

SPLITS = ("train", "val", "test")
DEFAULT_SIZES = {"train": 400, "val": 100, "test": 100}


def build(
    root: Path | None,
    split: str,
    transform: Transform | None = None,
    *,
    num_samples: int | None = None,
    seed: int = 0,
    height: int = 256,
    width: int = 320,
    night_fraction: float = 0.5,
    fog_fraction: float = 0.0,
    strict: bool = True,
) -> SyntheticSegDataset:
    """Synthetic split; ``num_samples`` defaults to ``DEFAULT_SIZES[split]``. Each split is its own random stream.

    Args:
        root: ignored (the scenes are generated in memory).
        split: ``train``, ``val`` or ``test``.
        transform: see :class:`ivtune.data.pairs.PairedSegDataset`.
        num_samples: number of items.
        seed: base seed.
        height: image height.
        width: image width.
        night_fraction: share of night scenes.
        fog_fraction: share of fog scenes.
        strict: accepted for a uniform call signature; nothing is on disk, so nothing can be missing.

    Returns:
        A :class:`SyntheticSegDataset`.
    """
    n = DEFAULT_SIZES[split] if num_samples is None else int(num_samples)
    return SyntheticSegDataset(n, seed, height, width, night_fraction, fog_fraction, transform, split=split)
