"""Fixtures for the data tests: tiny image trees written into tmp_path, and the path of the real sample files.

Helpers reach the tests through the ``tree`` fixture (not ``import conftest``: other test folders have their own
conftest modules, and the name would clash).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REAL = SHARED / "data" / "real"


def save_rgb(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8), "RGB").save(path)
    return path


def save_gray(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8), "L").save(path)
    return path


def save_rgba(path: Path, rgb: np.ndarray, thermal: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.dstack([rgb, thermal]).astype(np.uint8), "RGBA").save(path)
    return path


def random_pair(seed: int, hw: tuple[int, int], num_classes: int):
    rng = np.random.default_rng(seed)
    h, w = hw
    vis = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, (h, w), dtype=np.uint8)
    mask = rng.integers(0, num_classes, (h, w), dtype=np.uint8)
    return vis, ir, mask


class TreeWriter:
    """Writes ``root/split/{vis, ir, label}/NAME.png`` pairs with chosen folder names."""

    save_rgb = staticmethod(save_rgb)
    save_gray = staticmethod(save_gray)
    save_rgba = staticmethod(save_rgba)
    random_pair = staticmethod(random_pair)

    def __init__(self, root: Path):
        self.root = root

    def split_folders(self, split: str, names: list[str], folders: tuple[str, str, str], num_classes: int,
                      hw: tuple[int, int] = (24, 32)) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = {}
        for name in names:
            vis, ir, mask = random_pair(zlib.crc32(f"{split}/{name}".encode()), hw, num_classes)
            save_rgb(self.root / split / folders[0] / f"{name}.png", vis)
            save_gray(self.root / split / folders[1] / f"{name}.png", ir)
            save_gray(self.root / split / folders[2] / f"{name}.png", mask)
            out[name] = (vis, ir, mask)
        return out


@pytest.fixture
def tree(tmp_path: Path) -> TreeWriter:
    return TreeWriter(tmp_path)


@pytest.fixture
def real_root() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real sample data not found at {REAL} (shared/ is absent in this checkout)")
    return REAL
