"""Sensor faults: exact outputs on tiny arrays, targets stay in the visible frame, missing means exactly 0 after
normalisation, seeded determinism, and errors that list the valid specs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ivtune.data.degrade import (
    DEFAULT_FILL_MEANS,
    DEGRADE_SUITE,
    MODALITIES,
    SUITE_RATIONALE,
    Degradation,
    DegradedTransform,
    apply_missing_after_normalize,
    degradation_suite,
    drop_modality,
    missing_value,
    modality_dropout,
    normalization_means,
    parse_degradation,
    random_misalign,
    sample_rng,
)
from ivtune.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalize,
    PairedTransform,
    RandomHorizontalFlip,
    VisPhotometric,
    build_normalize,
    resize_image,
)
from ivtune.errors import ConfigError, InputShapeError

H, W = 6, 8
FILL_VIS, FILL_IR = (124, 116, 104), 114  # rint(255 * ImageNet mean), rint(255 * 0.449)


def _sample(vis: np.ndarray | None = None, ir: np.ndarray | None = None, name: str = "a") -> dict:
    """A 6x8 pair with a segmentation mask, a saliency map and boxes (every task's targets at once)."""
    if vis is None:
        vis = (np.arange(H * W * 3).reshape(H, W, 3) * 5 % 256).astype(np.uint8)
    if ir is None:
        ir = (np.arange(H * W).reshape(H, W) * 5).astype(np.uint8)  # 0, 5, ..., 235
    h, w = ir.shape[:2]
    return {
        "vis": vis, "ir": ir,
        "mask": (np.arange(h * w).reshape(h, w) % 3).astype(np.uint8),
        "saliency": (np.arange(h * w).reshape(h, w) > 20).astype(np.uint8),
        "boxes": np.array([[1.0, 1.0, 4.0, 5.0], [0.5, 2.0, 7.5, 6.0]], np.float32),
        "labels": np.array([0, 2], np.int64),
        "meta": {"name": name, "orig_size": (h, w)},
    }


def _apply(spec: str, sample: dict, seed: int = 0, **kw) -> dict:
    return parse_degradation(spec, **kw)(sample, np.random.default_rng(seed))


def _eval_pipeline(**norm) -> PairedTransform:
    return PairedTransform([build_normalize(**norm)])


class _Rescale:
    """A resize by a random factor (what a task's training pipeline does between loading and normalising)."""

    def __call__(self, s: dict, rng: np.random.Generator) -> dict:
        size = (int(rng.integers(3, 12)), int(rng.integers(3, 12)))
        return dict(s, vis=resize_image(s["vis"], size), ir=resize_image(s["ir"], size))


# ------------------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("spec, name", [
    ("ir:missing", "ir:missing"),
    ("IR:Missing", "ir:missing"),
    (" vis:dark = 2.0 ", "vis:dark=2"),
    ("vis:dark=2.5,1", "vis:dark=2.5"),
    ("vis:dark=2.5,0.5", "vis:dark=2.5,0.5"),
    ("vis:fog=0.6,0.8", "vis:fog=0.6"),
    ("vis:fog=0.6,1", "vis:fog=0.6,1"),
    ("vis:glare=0.15", "vis:glare"),
    ("vis:glare=0.3", "vis:glare=0.3"),
    ("ir:noise=10.0", "ir:noise=10"),
    ("ir:saturate=200", "ir:saturate"),
    ("ir:saturate=180", "ir:saturate=180"),
    ("vis:blur=9", "vis:blur=9"),
    ("shift=-8,+2", "shift=-8,2"),
    ("rotate=3.0", "rotate=3"),
    ("rotate=-2.5", "rotate=-2.5"),
])
def test_canonical_names(spec, name):
    d = parse_degradation(spec)
    assert d.name == name
    assert parse_degradation(d.name) == d  # the name parses back to the same degradation


def test_suite_specs_are_canonical_and_explained():
    assert len(DEGRADE_SUITE) == 12 and set(SUITE_RATIONALE) == set(DEGRADE_SUITE)
    assert [d.name for d in degradation_suite()] == list(DEGRADE_SUITE)
    assert all(SUITE_RATIONALE[s] and "\n" not in SUITE_RATIONALE[s] for s in DEGRADE_SUITE)


@pytest.mark.parametrize("spec, needle", [
    ("ir:noize=10", "Did you mean 'ir:noise=S'?"),
    ("noise=10", "Did you mean 'ir:noise=S'?"),
    ("ir:shift=8,0", "Did you mean 'shift=DX,DY'?"),
    ("blur=9", "Did you mean 'ir:blur=K' or 'vis:blur=K'?"),
    ("", "Empty degradation spec"),
    ("ir:missing=1", "takes no parameter"),
    ("vis:dark", "needs 1 to 2 parameter(s), got 0"),
    ("vis:dark=0", "G must be > 0, got 0"),
    ("vis:dark=abc", "G must be a number, got 'abc'"),
    ("vis:dark=2,1.5", "E must be in (0, 1], got 1.5"),
    ("vis:fog=0", "A must be in (0, 1]"),
    ("vis:fog=1.5", "A must be in (0, 1]"),
    ("vis:fog=0.5,2", "L must be in [0, 1]"),
    ("vis:glare=0", "S must be in (0, 1]"),
    ("vis:glare=", "S must be a number, got ''"),
    ("ir:noise=-1", "S must be > 0"),
    ("ir:noise=nan", "S must be > 0, got nan"),
    ("ir:saturate=255", "T must be an integer in [0, 254]"),
    ("ir:saturate=2.5", "T must be an integer, got '2.5'"),
    ("vis:blur=4", "K must be an odd integer >= 3, got 4"),
    ("ir:blur=1", "K must be an odd integer >= 3"),
    ("shift=8", "needs 2 parameter(s), got 1"),
    ("shift=1,2,3", "needs 2 parameter(s), got 3"),
    ("shift=1.5,0", "DX must be an integer"),
    ("rotate=200", "DEG must be in [-180, 180]"),
    ("rotate=inf", "DEG must be in [-180, 180], got inf"),
])
def test_bad_specs_name_the_problem_and_list_valid_specs(spec, needle):
    with pytest.raises(ConfigError) as info:
        parse_degradation(spec)
    msg = str(info.value)
    assert needle in msg
    for form in ("ir:missing", "vis:missing", "vis:dark=G[,E]", "vis:fog=A[,L]", "vis:glare[=S]", "ir:noise=S",
                 "ir:saturate[=T]", "vis:blur=K", "ir:blur=K", "shift=DX,DY", "rotate=DEG"):
        assert form in msg
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------ the missing convention


def test_missing_value_is_the_rounded_normalisation_mean():
    assert missing_value("vis", IMAGENET_MEAN) == FILL_VIS
    assert missing_value("ir", sum(IMAGENET_MEAN) / 3) == (FILL_IR,)
    assert missing_value("ir", IMAGENET_MEAN) == (FILL_IR,)  # one grey channel: the channel average
    assert missing_value("ir", 0.0) == (0,)
    assert missing_value("vis", 0.5) == (128, 128, 128)
    assert DEFAULT_FILL_MEANS["vis"] == tuple(IMAGENET_MEAN)
    with pytest.raises(ConfigError, match="divide them by 255"):
        missing_value("vis", (123.675, 116.28, 103.53))
    with pytest.raises(ConfigError, match="modality must be one of"):
        missing_value("rgb", 0.5)


@pytest.mark.parametrize("ir_norm, ir_mean, ir_channels", [
    ("imagenet", None, 1), ("imagenet", None, 3), ("unit", None, 1), ("meanstd", (0.35,), 1),
    ("meanstd", (0.3, 0.4, 0.5), 3),
])
def test_normalization_means_follow_normalize(ir_norm, ir_mean, ir_channels):
    norm = Normalize(IMAGENET_MEAN, IMAGENET_STD, ir_norm, ir_mean, (0.2,) * ir_channels, ir_channels)
    means = normalization_means(IMAGENET_MEAN, ir_norm, ir_mean)
    assert missing_value("ir", means["ir"]) == missing_value("ir", norm.ir_mean.flatten().tolist())
    assert missing_value("vis", means["vis"]) == missing_value("vis", norm.vis_mean.flatten().tolist())


@pytest.mark.parametrize("modality", MODALITIES)
def test_missing_yields_the_fill_and_a_flag(modality):
    s = _sample()
    before = copy.deepcopy(s)
    out = _apply(f"{modality}:missing", s)
    expected = np.broadcast_to(np.array(FILL_VIS, np.uint8), (H, W, 3)) if modality == "vis" else np.full((H, W), 114)
    np.testing.assert_array_equal(out[modality], expected)
    assert out[modality].dtype == np.uint8 and out[modality].shape == s[modality].shape
    assert out["meta"]["missing"] == [modality]
    other = "ir" if modality == "vis" else "vis"
    assert out[other] is s[other]
    assert "missing" not in s["meta"] and np.array_equal(s[modality], before[modality])


def test_drop_both_lists_modalities_in_order_once():
    s = drop_modality(drop_modality(_sample(), "ir", (FILL_IR,)), "vis", FILL_VIS)
    assert drop_modality(s, "ir", FILL_IR)["meta"]["missing"] == ["vis", "ir"]
    with pytest.raises(ConfigError, match="fill must be"):
        drop_modality(_sample(), "vis", (300, 0, 0))


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("ir_norm, ir_channels", [("imagenet", 1), ("imagenet", 3), ("unit", 1)])
def test_missing_is_exactly_zero_after_normalize(modality, ir_norm, ir_channels):
    pipeline = _eval_pipeline(ir_norm=ir_norm, ir_channels=ir_channels)
    means = normalization_means(IMAGENET_MEAN, ir_norm)
    out = pipeline(_apply(f"{modality}:missing", _sample(), fill_means=means))
    x = out[modality]
    # the fill alone is within half a grey level of the mean (for a 1-channel IR and for VIS) ...
    if modality == "vis" or ir_channels == 1:
        assert x.abs().max() <= 0.5 / 255 / 0.224 + 1e-6
    # ... and the flag makes it exact
    final = apply_missing_after_normalize(out)
    assert torch.equal(final[modality], torch.zeros_like(x)) and not torch.signbit(final[modality]).any()
    other = "ir" if modality == "vis" else "vis"
    assert final[other] is out[other] and final["mask"] is out["mask"]


def test_missing_stays_exact_through_training_jitter():
    pipeline = PairedTransform([_Rescale(), RandomHorizontalFlip(0.5), VisPhotometric(p=1.0), build_normalize()])
    for seed in range(5):
        out = pipeline(_apply("vis:missing", _sample()), rng=seed)
        assert out["vis"].abs().max() > 0.01  # the jitter moved the fill away from the mean ...
        out = apply_missing_after_normalize(out)
        assert torch.equal(out["vis"], torch.zeros_like(out["vis"]))  # ... and the flag still gives exact zeros


def test_apply_missing_on_batches():
    metas = [{"name": "a", "missing": ["ir"]}, {"name": "b"}, {"name": "c", "missing": ["vis", "ir"]}]
    ir, vis = torch.randn(3, 3, 2, 2), torch.randn(3, 3, 2, 2)
    out = apply_missing_after_normalize({"vis": vis, "ir": ir, "meta": metas})
    assert torch.equal(out["ir"][[0, 2]], torch.zeros(2, 3, 2, 2)) and torch.equal(out["ir"][1], ir[1])
    assert torch.equal(out["vis"][2], torch.zeros(3, 2, 2)) and torch.equal(out["vis"][:2], vis[:2])
    assert not torch.equal(ir[0], torch.zeros(3, 2, 2))  # the input was not written
    ir_list = list(ir)
    listed = apply_missing_after_normalize({"vis": list(vis), "ir": ir_list, "meta": metas})  # detection collate
    assert torch.equal(listed["ir"][0], torch.zeros(3, 2, 2)) and listed["ir"][1] is ir_list[1]
    vis_np = vis[0].numpy()
    arr = apply_missing_after_normalize({"vis": vis_np, "ir": ir[0].numpy(), "meta": metas[0]})
    assert np.array_equal(arr["ir"], np.zeros((3, 2, 2), np.float32)) and arr["vis"] is vis_np


# ------------------------------------------------------------------------------------------ photometric faults


def _probe_vis() -> np.ndarray:
    vis = np.zeros((H, W, 3), np.uint8)
    vis[0, 0] = (255, 0, 51)
    vis[0, 1] = (128, 102, 204)
    return vis


@pytest.mark.parametrize("spec, px00, px01", [
    ("vis:dark=2", (255, 0, 10), (64, 41, 163)),  # 255 (x/255)^2: 51 -> 10.2, 128 -> 64.25, 102 -> 40.8, 204 -> 163.2
    ("vis:dark=2,0.5", (128, 0, 5), (32, 20, 82)),  # half of those: 127.5 rounds to even 128
    ("vis:dark=1", (255, 0, 51), (128, 102, 204)),  # identity
    ("vis:fog=0.6", (224, 122, 143), (174, 163, 204)),  # 0.4 x + 122.4; 204 (the airlight) is a fixed point
    ("vis:fog=1", (204, 204, 204), (204, 204, 204)),  # all airlight
])
def test_vis_photometric_exact(spec, px00, px01):
    s = _sample(vis=_probe_vis())
    out = _apply(spec, s)
    assert tuple(out["vis"][0, 0]) == px00 and tuple(out["vis"][0, 1]) == px01
    assert out["ir"] is s["ir"] and out["vis"].dtype == np.uint8


def test_glare_exact():
    # seed 1 draws the centre (2, 4) on a 6x8 image; S = 0.5 gives s = 3, g = min(1, 2 exp(-d^2 / 18))
    rng = np.random.default_rng(1)
    assert (int(rng.integers(0, H)), int(rng.integers(0, W))) == (2, 4)
    vis = np.zeros((H, W, 3), np.uint8)
    vis[5, 0] = 100
    out = _apply("vis:glare=0.5", _sample(vis=vis), seed=1)["vis"]
    assert tuple(out[2, 4]) == (255, 255, 255)
    assert tuple(out[4, 6]) == (255, 255, 255)  # d^2 = 8 is inside the core (d^2 <= 18 ln 2 = 12.5)
    assert tuple(out[4, 7]) == (248, 248, 248)  # d^2 = 13: 255 * 0.9713
    assert tuple(out[5, 7]) == (188, 188, 188)  # d^2 = 18: 255 * 2 / e
    assert tuple(out[0, 0]) == (168, 168, 168)  # d^2 = 20: 255 * 0.6584
    assert tuple(out[5, 1]) == (188, 188, 188)  # d^2 = 9 + 9 = 18 again
    assert tuple(out[5, 0]) == (177, 177, 177)  # d^2 = 25: 100 + 155 * 0.4987


def test_ir_noise_exact_and_statistics():
    ir = np.full((H, W), 128, np.uint8)
    out = _apply("ir:noise=10", _sample(ir=ir), seed=3)["ir"]
    z = np.random.default_rng(3).standard_normal((H, W))
    np.testing.assert_array_equal(out, np.clip(np.rint(128 + 10 * z), 0, 255).astype(np.uint8))
    big = _apply("ir:noise=10", _sample(ir=np.full((200, 200), 128, np.uint8)), seed=4)["ir"].astype(float) - 128
    assert abs(big.mean()) < 0.2 and abs(big.std() - 10) < 0.2


def test_ir_saturate_exact():
    s = _sample()  # ir = 0, 5, ..., 235
    out = _apply("ir:saturate", s)["ir"]
    expected = np.where(s["ir"] > 200, 255, s["ir"])
    np.testing.assert_array_equal(out, expected)
    assert out[5, 0] == 200 and out[5, 1] == 255 and out[0, 1] == 5
    np.testing.assert_array_equal(_apply("ir:saturate=0", s)["ir"], np.where(s["ir"] > 0, 255, 0))


def test_box_blur_exact():
    ir = np.zeros((H, W), np.uint8)
    ir[2, 3] = 90
    out = _apply("ir:blur=3", _sample(ir=ir))["ir"]
    expected = np.zeros((H, W), np.uint8)
    expected[1:4, 2:5] = 10
    np.testing.assert_array_equal(out, expected)
    corner = np.zeros((H, W), np.uint8)
    corner[0, 0] = 90  # edge replication counts it 4, 2, 2 and 1 times in the four nearest windows
    out = _apply("ir:blur=3", _sample(ir=corner))["ir"]
    assert (out[0, 0], out[0, 1], out[1, 0], out[1, 1]) == (40, 20, 20, 10) and out.sum() == 90
    vis = np.zeros((H, W, 3), np.uint8)
    vis[3, 4, 1] = 225
    out = _apply("vis:blur=5", _sample(vis=vis))["vis"]
    assert np.array_equal(out[1:6, 2:7, 1], np.full((5, 5), 9)) and out[..., [0, 2]].sum() == 0
    flat = np.full((H, W), 77, np.uint8)
    np.testing.assert_array_equal(_apply("ir:blur=9", _sample(ir=flat))["ir"], flat)


# ------------------------------------------------------------------------------------------ geometric faults


@pytest.mark.parametrize("dx, dy", [(2, 1), (-3, 2), (0, -4), (8, 0), (0, 0)])
def test_shift_moves_ir_exactly_and_fills_the_border(dx, dy):
    s = _sample()
    out = _apply(f"shift={dx},{dy}", s)["ir"]
    for r in range(H):
        for c in range(W):
            src_r, src_c = r - dy, c - dx
            inside = 0 <= src_r < H and 0 <= src_c < W
            assert out[r, c] == (s["ir"][src_r, src_c] if inside else FILL_IR), (r, c)


def test_shift_known_pixel_and_keeps_ir_shape():
    ir = np.zeros((H, W, 1), np.uint8)
    ir[1, 2, 0] = 200
    out = _apply("shift=3,-1", _sample(ir=ir))["ir"]
    assert out.shape == (H, W, 1) and out[0, 5, 0] == 200
    assert (out[:, :3] == FILL_IR).all() and (out[H - 1] == FILL_IR).all()
    unit = _apply("shift=3,-1", _sample(ir=ir), fill_means=normalization_means(ir_norm="unit"))["ir"]
    assert (unit[:, :3] == 0).all()


def test_rotate_keeps_the_centre_and_turns_counter_clockwise():
    ir = np.random.default_rng(0).integers(0, 256, (7, 9), dtype=np.uint8)
    out = _apply("rotate=10", _sample(ir=ir))["ir"]
    assert out[3, 4] == ir[3, 4] and out[0, 0] == FILL_IR and out[6, 8] == FILL_IR
    np.testing.assert_array_equal(_apply("rotate=0", _sample(ir=ir))["ir"], ir)
    square = np.random.default_rng(1).integers(0, 256, (5, 5), dtype=np.uint8)
    np.testing.assert_array_equal(_apply("rotate=90", _sample(ir=square))["ir"], np.rot90(square))
    # by hand, 45 degrees on a 3x3: the pixel right of the centre samples (x, y) = (1 + 0.707, 1 + 0.707), where
    # the bottom-right pixel has the bilinear weight 0.707^2 = 0.5 (counter-clockwise: south-east turns to east)
    three = np.zeros((3, 3), np.uint8)
    three[2, 2] = 100
    got = _apply("rotate=45", _sample(ir=three))["ir"]
    assert got[1, 2] == 50 and got[1, 1] == 0 and got[2, 1] == 0


@pytest.mark.parametrize("spec", list(DEGRADE_SUITE) + ["vis:dark=2,0.5", "vis:glare=0.4", "shift=-3,5",
                                                        "rotate=-20", "ir:saturate=100"])
def test_targets_stay_in_the_visible_frame_and_inputs_are_not_written(spec):
    s = _sample()
    before = copy.deepcopy(s)
    out = _apply(spec, s, seed=5)
    for key in ("mask", "saliency", "boxes", "labels"):
        assert out[key] is s[key]
    for key in ("vis", "ir", "mask", "saliency", "boxes", "labels"):
        np.testing.assert_array_equal(s[key], before[key])
    assert s["meta"] == before["meta"]
    assert out["vis"].shape == s["vis"].shape and out["ir"].shape == s["ir"].shape
    assert out["vis"].dtype == out["ir"].dtype == np.uint8
    touched = "vis" if spec.startswith("vis:") else "ir"
    untouched = "ir" if touched == "vis" else "vis"
    assert out[untouched] is s[untouched]
    assert not np.array_equal(out[touched], s[touched])


# ------------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("spec", ["vis:glare", "ir:noise=10"])
def test_random_kinds_are_seeded(spec):
    s = _sample(ir=np.full((H, W), 128, np.uint8))
    key = "vis" if spec.startswith("vis") else "ir"
    a, b, c = (_apply(spec, s, seed=k)[key] for k in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ConfigError, match="is random"):
        parse_degradation(spec)(s)
    assert parse_degradation(spec).random


def test_deterministic_kinds_need_no_rng():
    assert not parse_degradation("shift=1,0").random
    out = parse_degradation("shift=1,0")(_sample())
    assert out["ir"][0, 0] == FILL_IR


def test_sample_rng_depends_on_seed_name_and_tag_only():
    draw = lambda *a: sample_rng(*a).random(4)  # noqa: E731
    assert np.array_equal(draw(0, "x", "ir:noise"), draw(0, "x", "ir:noise"))
    assert not np.array_equal(draw(0, "x", "ir:noise"), draw(0, "y", "ir:noise"))
    assert not np.array_equal(draw(0, "x", "ir:noise"), draw(1, "x", "ir:noise"))
    assert not np.array_equal(draw(0, "x", "ir:noise"), draw(0, "x", "vis:glare"))
    with pytest.raises(ConfigError, match="seed must be"):
        sample_rng(-1, "x")


def test_degraded_transform_gives_every_method_the_same_input():
    pipeline = _eval_pipeline()
    noise = parse_degradation("ir:noise=10")
    a = DegradedTransform(pipeline, noise, seed=3)(_sample(name="n1"))
    b = DegradedTransform(pipeline, noise, seed=3)(_sample(name="n1"))
    c = DegradedTransform(pipeline, noise, seed=3)(_sample(name="n2"))
    assert torch.equal(a["ir"], b["ir"]) and not torch.equal(a["ir"], c["ir"])
    # severities share the random numbers: noise 20 is noise 10 scaled (before clipping and rounding)
    twice = DegradedTransform(pipeline, parse_degradation("ir:noise=20"), seed=3)(_sample(name="n1"))
    clean = pipeline(_sample(name="n1"))
    assert torch.corrcoef(torch.stack([(a["ir"] - clean["ir"]).flatten(),
                                       (twice["ir"] - clean["ir"]).flatten()]))[0, 1] > 0.95
    dropped = DegradedTransform(pipeline, parse_degradation("ir:missing"))(_sample())
    assert torch.equal(dropped["ir"], torch.zeros(1, H, W))
    with pytest.raises(ConfigError, match="meta\\['name'\\]"):
        DegradedTransform(pipeline, noise)({"vis": _sample()["vis"], "ir": _sample()["ir"], "meta": {}})


def test_tensor_samples_are_rejected():
    s = _eval_pipeline()(_sample())
    with pytest.raises(InputShapeError, match="before the transform pipeline"):
        parse_degradation("ir:missing")(s)
    with pytest.raises(InputShapeError, match="uint8"):
        parse_degradation("ir:missing")(dict(_sample(), ir=np.zeros((H, W), np.float32)))


# ---------------------------------------------------------------------------------------------- training faults


def test_modality_dropout_p0_never_p1_always_one():
    for seed in range(100):
        s = _sample()
        kept = modality_dropout(s, 0.0, np.random.default_rng(seed), DEFAULT_FILL_MEANS)
        assert kept["vis"] is s["vis"] and kept["ir"] is s["ir"] and "missing" not in kept["meta"]
        dropped = modality_dropout(s, 1.0, np.random.default_rng(seed), DEFAULT_FILL_MEANS)
        assert len(dropped["meta"]["missing"]) == 1
        m = dropped["meta"]["missing"][0]
        assert np.array_equal(dropped[m], _apply(f"{m}:missing", s)[m])
    with pytest.raises(ConfigError, match="probability"):
        modality_dropout(_sample(), 1.5, np.random.default_rng(0), DEFAULT_FILL_MEANS)


def test_modality_dropout_picks_each_modality_half_the_time():
    counts = {"vis": 0, "ir": 0}
    s = _sample()
    for seed in range(1000):
        out = modality_dropout(s, 1.0, sample_rng(0, seed, "train-faults"), DEFAULT_FILL_MEANS)
        counts[out["meta"]["missing"][0]] += 1
    assert 450 <= counts["vis"] <= 550 and counts["vis"] + counts["ir"] == 1000  # binomial sd 15.8
    half = sum("missing" in modality_dropout(s, 0.5, np.random.default_rng(k), DEFAULT_FILL_MEANS)["meta"]
               for k in range(1000))
    assert 450 <= half <= 550
    a = modality_dropout(s, 0.5, np.random.default_rng(42), DEFAULT_FILL_MEANS)
    b = modality_dropout(s, 0.5, np.random.default_rng(42), DEFAULT_FILL_MEANS)
    assert a["meta"] == b["meta"]


def test_random_misalign_is_a_seeded_shift():
    s = _sample()
    seen = set()
    for seed in range(60):
        dx, dy = (int(v) for v in np.random.default_rng(seed).integers(-3, 4, size=2))
        out = random_misalign(s, 3, np.random.default_rng(seed))
        np.testing.assert_array_equal(out["ir"], _apply(f"shift={dx},{dy}", s)["ir"])
        assert out["mask"] is s["mask"] and out["boxes"] is s["boxes"] and out["vis"] is s["vis"]
        seen.add((dx, dy))
    assert {d for d, _ in seen} == set(range(-3, 4))
    np.testing.assert_array_equal(random_misalign(s, 0, np.random.default_rng(0))["ir"], s["ir"])
    with pytest.raises(ConfigError, match="max_px"):
        random_misalign(s, -1, np.random.default_rng(0))


def test_degradation_repr_and_equality():
    d = parse_degradation("vis:dark=2.5")
    assert repr(d) == "Degradation('vis:dark=2.5')" and d == Degradation("vis:dark", (2.5, 1.0))
