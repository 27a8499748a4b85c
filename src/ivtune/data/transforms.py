"""The paired transform pipeline every task uses, and its shared steps.

A :class:`PairedTransform` takes the raw sample of :class:`ivtune.data.pairs.PairedDataset` (numpy ``vis``
(H, W, 3) uint8, ``ir`` (H, W) uint8 and the task's target), converts it to tensors scaled to [0, 1] and runs its
steps on tensors. The steps here are the ones every task shares: the joint horizontal flip (VIS, IR and any
dense target together), VIS-only photometric jitter, and the final per-modality normalisation, which is where the
IR image becomes 3 channels if asked; :func:`build_normalize` is the one place the IR normalisation arguments are
checked. Task steps (segmentation's random resize and crop, detection's box-aware resize, SOD's rotation) live in
each task's ``transforms.py``. Images are resized bilinearly (:func:`resize_image`), dense labels with nearest
neighbour (:func:`resize_mask`: ``nearest-exact``, the same pixel-centre grid as bilinear with
``align_corners=False``, so image and label stay aligned).

Randomness: each call draws its parameters from a numpy ``Generator``. Pass one (or an int seed) as ``rng`` for a
fixed result; without it the generator is seeded from torch's global RNG, which ``torch.manual_seed`` and the
DataLoader's per-worker seeding make reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from ..errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IR_NORMS = ("imagenet", "unit", "meanstd")

Sample = dict[str, Any]


def to_tensors(sample: Sample) -> Sample:
    """Numpy sample -> tensor sample: ``vis`` (3, H, W) and ``ir`` (1, H, W) float in [0, 1], ``mask`` int64.

    Tensors already present are passed through, so this is safe to call twice.
    """
    out = dict(sample)
    vis, ir = sample["vis"], sample["ir"]
    if isinstance(vis, np.ndarray):
        out["vis"] = torch.from_numpy(np.ascontiguousarray(vis.transpose(2, 0, 1))).float().div_(255.0)
    if isinstance(ir, np.ndarray):
        ir = ir[..., 0] if ir.ndim == 3 else ir  # (H, W, 1) from some readers
        out["ir"] = torch.from_numpy(np.ascontiguousarray(ir))[None].float().div_(255.0)
    if isinstance(sample.get("mask"), np.ndarray):
        out["mask"] = torch.from_numpy(sample["mask"].astype(np.int64))
    return out


def resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # antialias keeps thin structures (lane marks, poles) from aliasing when shrinking by 2x.
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def resize_mask(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # float32 holds label values up to 2^24 exactly; nearest-exact uses the same pixel centres as bilinear.
    return F.interpolate(m[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()


class RandomHorizontalFlip:
    """Mirror VIS, IR and label together with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return s
        s = dict(s)
        for key in ("vis", "ir", "mask"):
            if key in s:
                s[key] = s[key].flip(-1)
        return s

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class VisPhotometric:
    """Brightness, contrast, saturation and hue jitter of the visible image, each applied with probability ``p``.

    Defaults follow mmseg's ``PhotoMetricDistortion`` (brightness ±32/255, contrast and saturation ×[0.5, 1.5], hue
    ±18 of OpenCV's 180 steps = ±0.1 of the hue circle). The thermal image is left alone: its grey levels encode
    temperature, not illumination.
    """

    def __init__(
        self,
        brightness: float = 32 / 255,
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: float = 0.1,
        p: float = 0.5,
    ):
        self.brightness, self.contrast, self.saturation, self.hue, self.p = brightness, contrast, saturation, hue, p

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        vis = s["vis"]
        # Draw every parameter on every call so the stream of random numbers does not depend on earlier coin flips.
        flips = rng.random(4) < self.p
        b = rng.uniform(-self.brightness, self.brightness)
        c = rng.uniform(*self.contrast)
        sat = rng.uniform(*self.saturation)
        h = rng.uniform(-self.hue, self.hue)
        if flips[0]:
            vis = (vis + b).clamp_(0.0, 1.0)
        if flips[1]:
            vis = TF.adjust_contrast(vis, c)
        if flips[2]:
            vis = TF.adjust_saturation(vis, sat)
        if flips[3]:
            vis = TF.adjust_hue(vis, h)
        return dict(s, vis=vis)

    def __repr__(self) -> str:
        return (
            f"VisPhotometric(brightness={self.brightness:.3f}, contrast={self.contrast}, saturation={self.saturation},"
            f" hue={self.hue}, p={self.p})"
        )


class Normalize:
    """Final step: VIS ``(x - mean) / std``; IR replicated to ``ir_channels`` and normalised per ``ir_norm``.

    ``ir_norm``: ``"imagenet"`` uses the ImageNet statistics (their channel averages 0.449 / 0.226 for a 1-channel
    IR image); ``"unit"`` keeps [0, 1] (the authors' SOD setting); ``"meanstd"`` uses ``ir_mean`` / ``ir_std``.
    """

    def __init__(
        self,
        vis_mean: Sequence[float],
        vis_std: Sequence[float],
        ir_norm: str,
        ir_mean: Sequence[float] | None,
        ir_std: Sequence[float] | None,
        ir_channels: int,
    ):
        self.vis_mean = torch.tensor(vis_mean, dtype=torch.float32).view(3, 1, 1)
        self.vis_std = torch.tensor(vis_std, dtype=torch.float32).view(3, 1, 1)
        self.ir_norm, self.ir_channels = ir_norm, ir_channels
        if ir_norm == "imagenet":
            mean, std = (IMAGENET_MEAN, IMAGENET_STD) if ir_channels == 3 else (
                (sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
        elif ir_norm == "meanstd":
            mean, std = ir_mean, ir_std
        else:
            mean, std = (0.0,), (1.0,)
        self.ir_mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.ir_std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, s: Sample, rng: np.random.Generator) -> Sample:
        ir = s["ir"]
        if self.ir_channels == 3 and ir.shape[0] == 1:
            ir = ir.expand(3, -1, -1)
        ir = (ir - self.ir_mean) / self.ir_std
        return dict(s, vis=(s["vis"] - self.vis_mean) / self.vis_std, ir=ir.contiguous())

    def __repr__(self) -> str:
        return (
            f"Normalize(vis_mean={self.vis_mean.flatten().tolist()}, vis_std={self.vis_std.flatten().tolist()}, "
            f"ir_norm={self.ir_norm!r}, ir_mean={self.ir_mean.flatten().tolist()}, "
            f"ir_std={self.ir_std.flatten().tolist()}, ir_channels={self.ir_channels})"
        )


class PairedTransform:
    """A pipeline: ``convert`` (:func:`to_tensors` by default), then each step ``step(sample, rng)`` in order.

    Args:
        steps: callables ``(sample, rng) -> sample`` working on tensors.
        convert: raw numpy sample -> tensor sample.
    """

    def __init__(self, steps: Sequence[Any], convert: Any = to_tensors):
        self.steps = list(steps)
        self.convert = convert  # the first step: raw numpy sample -> tensors (detection converts boxes too)

    def __call__(self, sample: Sample, rng: np.random.Generator | int | None = None) -> Sample:
        """Transform one raw sample; ``rng`` (a Generator or seed) fixes the random draws."""
        if rng is None:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        elif not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        out = self.convert(sample)
        for step in self.steps:
            out = step(out, rng)
        return out

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(s) for s in self.steps)
        return f"{type(self).__name__}([\n  {inner}\n])"


def positive_pair(value: Any, key: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be an int or (H, W), got {value!r}.") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"{key} must be positive, got {(h, w)}.")
    return h, w


def check_stats(value: Any, key: str, n: Sequence[int]) -> tuple[float, ...]:
    vals = (float(value),) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(vals) not in n:
        raise ConfigError(f"{key} needs {' or '.join(map(str, n))} values, got {len(vals)}: {vals}.")
    if key.endswith("mean") and any(not 0.0 <= v <= 1.0 for v in vals):
        raise ConfigError(
            f"{key} must be in [0, 1] (images are scaled to [0, 1] before normalising), got {vals}. If these are "
            "0-255 pixel statistics, divide them by 255."
        )
    if key.endswith("std") and any(v <= 0 for v in vals):
        raise ConfigError(f"{key} must be positive, got {vals}.")
    return vals


def build_normalize(
    ir_norm: str = "imagenet",
    ir_mean: float | Sequence[float] | None = None,
    ir_std: float | Sequence[float] | None = None,
    ir_channels: int = 1,
    vis_mean: Sequence[float] = IMAGENET_MEAN,
    vis_std: Sequence[float] = IMAGENET_STD,
) -> Normalize:
    """The final step of every pipeline, with every argument checked (the one IR-argument check of all tasks).

    Args:
        ir_norm: ``"imagenet"``, ``"unit"`` ([0, 1], no normalisation) or ``"meanstd"`` (needs ``ir_mean``/``ir_std``).
        ir_mean: IR mean in [0, 1] units, one value or one per output channel (``"meanstd"`` only).
        ir_std: IR std in [0, 1] units.
        ir_channels: 1 (grey, the backbone repeats it) or 3 (replicated here).
        vis_mean: VIS mean in [0, 1] units (ImageNet by default).
        vis_std: VIS std in [0, 1] units.

    Raises:
        ConfigError: an argument is out of range; the message names it.
    """
    if ir_norm not in IR_NORMS:
        raise ConfigError(f"ir_norm must be one of {IR_NORMS}, got {ir_norm!r}.")
    if ir_channels not in (1, 3):
        raise ConfigError(f"ir_channels must be 1 or 3, got {ir_channels!r}.")
    vm, vs = check_stats(vis_mean, "vis_mean", (3,)), check_stats(vis_std, "vis_std", (3,))
    im = istd = None
    if ir_norm == "meanstd":
        if ir_mean is None or ir_std is None:
            raise ConfigError("ir_norm='meanstd' needs ir_mean and ir_std (in [0, 1] units).")
        im = check_stats(ir_mean, "ir_mean", (1, ir_channels))
        istd = check_stats(ir_std, "ir_std", (1, ir_channels))
    return Normalize(vm, vs, ir_norm, im, istd, ir_channels)


def check_hflip(hflip: float) -> float:
    if not 0.0 <= hflip <= 1.0:
        raise ConfigError(f"hflip is a probability in [0, 1], got {hflip}.")
    return float(hflip)

