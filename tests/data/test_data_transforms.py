"""Paired transforms keep VIS, IR and label aligned; photometric jitter touches VIS only; draws are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivtune.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ivtune.errors import ConfigError
from ivtune.tasks.seg.transforms import build_seg_transforms

H, W = 40, 60
RAW = {"vis_mean": (0.0, 0.0, 0.0), "vis_std": (1.0, 1.0, 1.0), "ir_norm": "unit"}  # outputs stay in [0, 1]


def _pattern() -> dict:
    """VIS, IR and label encode the same left/right- and top/bottom-asymmetric layout."""
    mask = np.zeros((H, W), np.uint8)
    mask[5:16, 4:22] = 1  # top-left block
    mask[22:36, 34:56] = 2  # bottom-right block
    mask[0:12, 40:44] = 1  # a thin bar, top right
    vis = np.zeros((H, W, 3), np.uint8)
    vis[mask == 1, 0] = 250
    vis[mask == 2, 1] = 250
    ir = np.zeros((H, W), np.uint8)
    ir[mask == 1] = 200
    ir[mask == 2] = 100
    return {"vis": vis, "ir": ir, "mask": mask, "meta": {"name": "pattern"}}


def _decode(out: dict) -> tuple[np.ndarray, np.ndarray]:
    """The class each modality shows at every pixel."""
    vis, ir = out["vis"].numpy(), out["ir"][0].numpy()
    from_vis = np.where(vis[0] > 0.5, 1, np.where(vis[1] > 0.5, 2, 0))
    from_ir = np.where(ir > 0.6, 1, np.where(ir > 0.25, 2, 0))
    return from_vis, from_ir


def test_flip_is_shared_exactly():
    sample = _pattern()
    out = build_seg_transforms(True, scale_range=(1, 1), hflip=1.0, photometric=False, **RAW)(sample, rng=0)
    assert torch.equal(out["mask"], torch.from_numpy(sample["mask"][:, ::-1].copy()).long())
    from_vis, from_ir = _decode(out)
    assert np.array_equal(from_vis, out["mask"].numpy()) and np.array_equal(from_ir, out["mask"].numpy())


def test_resize_scales_all_three():
    sample = _pattern()
    out = build_seg_transforms(True, scale_range=(2, 2), hflip=0, photometric=False, **RAW)(sample, rng=0)
    assert out["vis"].shape == (3, 2 * H, 2 * W) and out["ir"].shape == (1, 2 * H, 2 * W)
    assert np.array_equal(out["mask"].numpy(), sample["mask"].repeat(2, 0).repeat(2, 1))
    from_vis, from_ir = _decode(out)
    assert (from_vis == out["mask"].numpy()).mean() > 0.97 and (from_ir == out["mask"].numpy()).mean() > 0.97


def test_crop_is_one_window_of_all_three():
    sample = _pattern()
    tf = build_seg_transforms(True, crop_size=(20, 30), scale_range=(1, 1), hflip=0, photometric=False, **RAW)
    for seed in range(5):
        out = tf(sample, rng=seed)
        m = out["mask"].numpy()
        hits = [(t, left) for t in range(H - 19) for left in range(W - 29)
                if np.array_equal(sample["mask"][t:t + 20, left:left + 30], m)]
        t, left = hits[0]
        expect_ir = torch.from_numpy(sample["ir"][t:t + 20, left:left + 30]).float() / 255
        assert torch.equal(out["ir"][0], expect_ir)


@pytest.mark.parametrize("seed", range(8))
def test_random_pipeline_keeps_alignment(seed):
    tf = build_seg_transforms(True, crop_size=(32, 48), scale_range=(0.5, 2.0), hflip=0.5, photometric=False, **RAW)
    out = tf(_pattern(), rng=seed)
    mask = out["mask"].numpy()
    valid = mask != 255
    from_vis, from_ir = _decode(out)
    assert (from_vis[valid] == mask[valid]).mean() > 0.95
    assert (from_ir[valid] == mask[valid]).mean() > 0.95


def test_crop_larger_than_image_pads_label_with_ignore():
    tf = build_seg_transforms(True, crop_size=(64, 80), scale_range=(1, 1), hflip=0, photometric=False, **RAW)
    out = tf(_pattern(), rng=3)
    assert out["vis"].shape == (3, 64, 80) and out["mask"].shape == (64, 80)
    pad = out["mask"] == 255
    assert pad.sum() == 64 * 80 - H * W
    assert out["vis"][:, pad].abs().max() == 0 and out["ir"][:, pad].abs().max() == 0


def test_photometric_changes_vis_only():
    sample = _pattern()
    sample["vis"][..., 2] = 90  # some texture so contrast/saturation/hue have something to act on
    plain = build_seg_transforms(True, scale_range=(1, 1), hflip=0, photometric=False, **RAW)(sample, rng=0)
    jitter = build_seg_transforms(True, scale_range=(1, 1), hflip=0, photometric=True, **RAW)
    changed = 0
    for seed in range(6):
        out = jitter(sample, rng=seed)
        assert torch.equal(out["ir"], plain["ir"]) and torch.equal(out["mask"], plain["mask"])
        changed += not torch.allclose(out["vis"], plain["vis"])
    assert changed >= 4


def test_reproducible_under_a_seed():
    tf = build_seg_transforms(True, crop_size=(32, 32))
    a, b = tf(_pattern(), rng=7), tf(_pattern(), rng=np.random.default_rng(7))
    assert all(torch.equal(a[k], b[k]) for k in ("vis", "ir", "mask"))
    torch.manual_seed(0)
    c = tf(_pattern())
    torch.manual_seed(0)
    d = tf(_pattern())
    assert all(torch.equal(c[k], d[k]) for k in ("vis", "ir", "mask"))


def test_eval_pipeline_and_normalisation():
    sample = _pattern()
    tf = build_seg_transforms(False, ir_channels=3)
    a, b = tf(sample), tf(sample)
    assert all(torch.equal(a[k], b[k]) for k in ("vis", "ir", "mask"))
    assert a["vis"].shape == (3, H, W) and a["ir"].shape == (3, H, W)
    assert torch.allclose(a["vis"][:, 0, 0], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))
    assert torch.allclose(a["ir"][:, 0, 0], -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))
    one = build_seg_transforms(False)(sample)
    assert one["ir"].shape == (1, H, W)
    resized = build_seg_transforms(False, eval_size=(20, 30))(sample)
    assert resized["vis"].shape == (3, 20, 30) and resized["mask"].shape == (H, W)  # metrics at native size
    ms = build_seg_transforms(False, ir_norm="meanstd", ir_mean=0.5, ir_std=0.25)(sample)
    assert torch.allclose(ms["ir"][0, 0, 0], torch.tensor(-2.0))


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="255"):
        build_seg_transforms(True, vis_mean=(123.7, 116.3, 103.5))
    with pytest.raises(ConfigError, match="ir_mean"):
        build_seg_transforms(True, ir_norm="meanstd")
    with pytest.raises(ConfigError, match="ir_channels"):
        build_seg_transforms(True, ir_channels=2)
    with pytest.raises(ConfigError, match="ir_norm"):
        build_seg_transforms(True, ir_norm="zscore")
    with pytest.raises(ConfigError, match="crop_size"):
        build_seg_transforms(True, crop_size=(0, 10))
