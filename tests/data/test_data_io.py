"""Image readers: modes, bit depths, MFNet 4-channel split, and the DataError for every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ivtune.data.io import read_gray, read_label, read_mfnet_4ch, read_rgb
from ivtune.errors import DataError


def test_read_rgb_modes(tmp_path, tree):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    out = read_rgb(tree.save_rgb(tmp_path / "a.png", rgb))
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3) and np.array_equal(out, rgb)
    grey = read_rgb(tree.save_gray(tmp_path / "g.png", rgb[..., 0]))
    assert grey.shape == (6, 8, 3) and np.array_equal(grey[..., 2], rgb[..., 0])
    opaque = read_rgb(tree.save_rgba(tmp_path / "o.png", rgb, np.full((6, 8), 255, np.uint8)))
    assert np.array_equal(opaque, rgb)


def test_read_rgb_rejects_packed_thermal(tmp_path, tree):
    path = tree.save_rgba(tmp_path / "packed.png", np.zeros((6, 8, 3)), np.arange(48).reshape(6, 8))
    with pytest.raises(DataError, match="read_mfnet_4ch") as err:
        read_rgb(path)
    assert str(path) in str(err.value)


def test_read_gray_converts_rgb_and_16bit(tmp_path, tree):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tree.save_rgb(tmp_path / "t.png", rgb)
    out = read_gray(path)
    assert out.shape == (5, 7) and np.array_equal(out, np.asarray(Image.open(path).convert("L")))
    raw = np.linspace(1000, 3000, 35).astype(np.uint16).reshape(5, 7)
    p16 = tmp_path / "t16.png"
    Image.fromarray(raw).save(p16)
    minmax = read_gray(p16)
    assert minmax.dtype == np.uint8 and minmax.min() == 0 and minmax.max() == 255
    assert np.array_equal(read_gray(p16, high_depth="shift"), (raw >> 8).astype(np.uint8))


def test_read_label_palette_indices_not_colours(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "p.png")
    out = read_label(tmp_path / "p.png")
    assert out.shape == (2, 3) and np.array_equal(out, idx)


def test_read_label_rejects_colour_coded(tmp_path, tree):
    colours = np.zeros((4, 4, 3), np.uint8)
    colours[:2] = (200, 10, 10)
    path = tree.save_rgb(tmp_path / "colour.png", colours)
    with pytest.raises(DataError, match="colour-coded") as err:
        read_label(path)
    assert str(path) in str(err.value)
    grey_rgb = tree.save_rgb(tmp_path / "grey.png", np.repeat(np.arange(16, dtype=np.uint8).reshape(4, 4, 1), 3, 2))
    assert np.array_equal(read_label(grey_rgb), np.arange(16).reshape(4, 4))


def test_read_mfnet_4ch_synthetic(tmp_path, tree):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    thermal = rng.integers(0, 256, (12, 16), dtype=np.uint8)
    vis, ir = read_mfnet_4ch(tree.save_rgba(tmp_path / "00001D.png", rgb, thermal))
    assert np.array_equal(vis, rgb) and np.array_equal(ir, thermal)
    path = tree.save_rgb(tmp_path / "three.png", rgb)
    with pytest.raises(DataError, match="4-channel") as err:
        read_mfnet_4ch(path)
    assert str(path) in str(err.value)


@pytest.mark.shared
def test_read_mfnet_4ch_real(real_root):
    vis, ir = read_mfnet_4ch(real_root / "mfnet_unlabeled" / "rgbt4ch" / "01234N.png")
    assert vis.shape == (480, 640, 3) and ir.shape == (480, 640)
    assert (int(ir.min()), int(ir.max())) == (8, 243)  # the range stated in shared/data/real/README.md


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.png"
    for reader in (read_rgb, read_gray, read_label, read_mfnet_4ch):
        with pytest.raises(DataError, match="not found") as err:
            reader(missing)
        assert str(missing) in str(err.value)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(DataError, match="corrupt") as err:
        read_rgb(corrupt)
    assert str(corrupt) in str(err.value)
    assert issubclass(DataError, ValueError)
