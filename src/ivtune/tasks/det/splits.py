"""Seeded train / val split files for datasets that ship without an official split (M3FD).

The rule is fixed so that anyone with the same images gets the same files: every stem present in *both* the
visible and the infrared folder, sorted, shuffled with ``random.Random(seed)``, the first ``round(n * fraction)``
for training and the rest for validation. For M3FD's 4,200 pairs and the defaults: 3,360 train / 840 val.
"""

from __future__ import annotations

import random
from pathlib import Path

from ...checkpoint import atomic_write
from ...data.layout import index_dir, require_dir
from ...errors import DataError

SPLIT_LAYOUTS = {"m3fd": ("vi", "ir")}  # dataset -> (visible folder, infrared folder) under the root


def seeded_split(stems: list[str], seed: int = 0, train_fraction: float = 0.8) -> tuple[list[str], list[str]]:
    """``(train, val)`` stems by the rule in the module docstring (input order does not matter)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction}.")
    order = sorted(set(stems))
    random.Random(seed).shuffle(order)
    n_train = round(len(order) * train_fraction)
    return order[:n_train], order[n_train:]


def write_split_files(root: str | Path, dataset: str = "m3fd", *, seed: int = 0, train_fraction: float = 0.8,
                      force: bool = False) -> dict[str, Path]:
    """Write ``root/train.txt`` and ``root/val.txt`` (one stem per line) for ``dataset``; returns their paths.

    Existing files with different content are kept unless ``force``: replacing a split silently would mix
    results across splits. Pairs missing a partner are left out and reported by ``ivtune data check``.
    """
    if dataset not in SPLIT_LAYOUTS:
        raise DataError(f"No split rule for dataset {dataset!r}; known: {sorted(SPLIT_LAYOUTS)}.")
    root = Path(root)
    vis_name, ir_name = SPLIT_LAYOUTS[dataset]
    vis = index_dir(require_dir(root / vis_name, f"{dataset} visible"))
    ir = index_dir(require_dir(root / ir_name, f"{dataset} infrared"))
    stems = sorted(set(vis) & set(ir))
    if len(stems) < 2:
        raise DataError(f"{root}: found {len(stems)} visible+infrared pair(s) in {vis_name}/ and {ir_name}/; a split "
                        "needs at least 2. Check the root folder.")
    train, val = seeded_split(stems, seed, train_fraction)
    out = {}
    for name, part in (("train", train), ("val", val)):
        path = root / f"{name}.txt"
        text = "".join(f"{s}\n" for s in part)
        if path.is_file() and path.read_text() != text and not force:
            raise DataError(f"{path} exists with a different split (seed {seed}, fraction {train_fraction} would "
                            "change it). Keep it, or pass --force to replace it (results on the old split are then "
                            "not comparable).")
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text))
        out[name] = path
    return out
