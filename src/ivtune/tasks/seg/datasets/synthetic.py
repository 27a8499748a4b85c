"""Registry entry for the in-memory synthetic scenes of :mod:`ivtune.data.synthetic` (no files, ``root`` unused)."""

from __future__ import annotations

from pathlib import Path

from ..pairs import Transform
from ..synthetic import SyntheticSegDataset

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
