"""Where a model looks: the first three principal components of its last block's patch tokens as an RGB image, and
a Grad-CAM map of the task output, each beside the visible and infrared image (``ivtune analyze --maps``).

The class-activation map is `pytorch-grad-cam`'s ``GradCAM`` (package ``grad-cam``, the ``analysis`` extra):
maintained, used widely, and it already has the targets the three tasks need: ``SemanticSegmentationTarget``
(a class's logits summed over a pixel mask) for segmentation and SOD, ``FasterRCNNBoxScoreTarget`` (score + IoU of
the detections matching given boxes) for detection, which reads the ``boxes`` / ``labels`` / ``scores`` dicts every
torchvision detector returns. What is ours is the plumbing: grad-cam calls ``model(x)`` with one tensor, so the
pair enters as ``cat([vis, ir], 1)`` and is split again; the target layer is the last analysed block (one per branch
of a dual-branch backbone, whose maps grad-cam averages), its tokens reshaped to a ``(B, C, h, w)`` map.

What each task's map is computed for:

- ``seg``: one class (``--cam-class``, a name or an index; default: the class other than index 0 that the model
  predicts on most pixels of the image), summed over the pixels predicted as that class (the whole image when
  there are none);
- ``sod``: the final saliency logits, summed over the pixels predicted salient (p > 0.5; the whole image when none);
- ``det``: the (up to) :data:`TOP_DETECTIONS` highest-scoring detections; an image without any gets no map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .block_tokens import patch_tokens, tokens_to_map

TOP_DETECTIONS = 3
SALIENT = 0.5


def require_grad_cam() -> None:
    """Raise a :class:`ConfigError` with the install line when pytorch-grad-cam is missing."""
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        raise ConfigError("--maps needs pytorch-grad-cam (package grad-cam): pip install 'ivtune[analysis]' "
                          "(or pip install grad-cam), then run again.") from None


# ---------------------------------------------------------------------------------------------------- PCA colours
def pca_rgb(tokens: torch.Tensor, mean: torch.Tensor, components: torch.Tensor, lo: torch.Tensor,
            hi: torch.Tensor) -> np.ndarray:
    """``(h, w, C)`` tokens projected on 3 principal ``components`` -> ``(h, w, 3)`` float in [0, 1].

    ``lo`` / ``hi`` (per component) are fixed from the pooled tokens of every analysed image, so colours mean the
    same in every image of one run.
    """
    proj = (tokens.to(torch.float64) - mean) @ components.T  # (h, w, 3)
    rgb = (proj - lo) / (hi - lo).clamp_min(1e-12)
    return rgb.clamp(0.0, 1.0).numpy()


def projection_range(x: torch.Tensor, mean: torch.Tensor, components: torch.Tensor,
                     q: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``q`` and ``1 - q`` quantiles of each component's projection over the pooled tokens ``x`` (n, C)."""
    proj = (x.to(torch.float64) - mean) @ components.T
    return torch.quantile(proj, q, dim=0), torch.quantile(proj, 1.0 - q, dim=0)


def to_image_size(grid: np.ndarray | torch.Tensor, padded: tuple[int, int], valid: tuple[int, int],
                  size: tuple[int, int], mode: str) -> np.ndarray:
    """An (h, w[, 3]) map over the padded input -> the image's ``size`` (H, W[, 3]): scaled to the padded input,
    cropped to the valid part, resized to the image (the model input may be a resized copy of it)."""
    t = torch.as_tensor(np.asarray(grid), dtype=torch.float32)
    chw = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
    if tuple(chw.shape[-2:]) != tuple(padded):
        chw = F.interpolate(chw, size=padded, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
    chw = chw[..., : valid[0], : valid[1]]
    if tuple(chw.shape[-2:]) != tuple(size):
        chw = F.interpolate(chw, size=size, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))
    out = chw[0].permute(1, 2, 0) if t.ndim == 3 else chw[0, 0]
    return out.clamp(0.0, 1.0).numpy()


# ---------------------------------------------------------------------------------------------------- Grad-CAM
@dataclass(frozen=True)
class CamSpec:
    """How one task's output enters Grad-CAM.

    Attributes:
        forward: ``(model, vis, ir) -> outputs`` as grad-cam's targets read them (one entry per image).
        targets: ``(outputs of one image without gradient, valid (h, w), classes, cam_class) -> (targets or None,
            what the map is for)``.
    """

    forward: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]
    targets: Callable[[Any, tuple[int, int], Sequence[str], str | None], tuple[list | None, str]]


def _valid_mask(shape: tuple[int, int], valid: tuple[int, int]) -> np.ndarray:
    m = np.zeros(shape, dtype=np.float32)
    m[: valid[0], : valid[1]] = 1.0
    return m


def resolve_cam_class(cam_class: str | None, classes: Sequence[str]) -> int | None:
    """``--cam-class`` (a class name or index) -> index; None stays None (the default choice per image)."""
    if cam_class is None:
        return None
    names = list(classes)
    if cam_class in names:
        return names.index(cam_class)
    if cam_class.lstrip("-").isdigit() and 0 <= int(cam_class) < len(names):
        return int(cam_class)
    listed = ", ".join(f"{i} {c}" for i, c in enumerate(names))
    raise ConfigError(f"--cam-class {cam_class!r} is not a class of this run; give a name or index of: {listed}.")


def _seg_targets(logits: torch.Tensor, valid: tuple[int, int], classes: Sequence[str],
                 cam_class: str | None) -> tuple[list, str]:
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    pred = logits.argmax(0).numpy()  # (Hp, Wp)
    inside = _valid_mask(pred.shape, valid)
    chosen = resolve_cam_class(cam_class, classes)
    if chosen is None:
        counts = np.bincount(pred[inside > 0].ravel(), minlength=len(classes))
        chosen = int(counts[1:].argmax()) + 1 if len(counts) > 1 and counts[1:].any() else 0
    mask = (pred == chosen).astype(np.float32) * inside
    where = "its predicted pixels"
    if not mask.any():
        mask, where = inside, "the whole image (no pixel predicted as it)"
    return [SemanticSegmentationTarget(chosen, mask)], f"class {chosen} {classes[chosen]!r}, over {where}"


def _sod_targets(logits: torch.Tensor, valid: tuple[int, int], classes: Sequence[str],
                 cam_class: str | None) -> tuple[list, str]:
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    inside = _valid_mask(tuple(logits.shape[-2:]), valid)
    mask = (torch.sigmoid(logits[0]).numpy() > SALIENT).astype(np.float32) * inside
    where = f"the pixels predicted salient (p > {SALIENT})"
    if not mask.any():
        mask, where = inside, "the whole image (no pixel predicted salient)"
    return [SemanticSegmentationTarget(0, mask)], f"the saliency map, over {where}"


def _det_targets(det: dict[str, torch.Tensor], valid: tuple[int, int], classes: Sequence[str],
                 cam_class: str | None) -> tuple[list | None, str]:
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget

    if det["scores"].numel() == 0:
        return None, "no detections: no map"
    top = det["scores"].argsort(descending=True)[:TOP_DETECTIONS]
    labels, boxes, scores = det["labels"][top], det["boxes"][top], det["scores"][top]
    shown = ", ".join(f"{classes[int(lab)] if int(lab) < len(classes) else int(lab)} {float(s):.2f}"
                      for lab, s in zip(labels, scores, strict=True))
    return [FasterRCNNBoxScoreTarget(labels.tolist(), boxes.numpy())], f"the top {len(top)} detection(s): {shown}"


CAM_SPECS: dict[str, CamSpec] = {
    "seg": CamSpec(lambda m, v, r: m(v, r), _seg_targets),
    "sod": CamSpec(lambda m, v, r: m(v, r)[0], _sod_targets),
    "det": CamSpec(lambda m, v, r: m(list(v), list(r)), _det_targets),
}


def cam_spec(task: str) -> CamSpec:
    if task not in CAM_SPECS:
        raise ConfigError(f"--maps has no class-activation target for task {task!r}; supported: "
                          f"{', '.join(CAM_SPECS)}. Add a CamSpec to ivtune.runner.maps.CAM_SPECS.")
    return CAM_SPECS[task]


class _PairInput(nn.Module):
    """grad-cam calls ``model(x)`` with one tensor: ``x = cat([vis, ir], 1)``, split here again."""

    def __init__(self, model: nn.Module, forward: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any],
                 vis_channels: int = 3) -> None:
        super().__init__()
        self.model = model
        self.run = forward
        self.vis_channels = vis_channels

    def forward(self, x: torch.Tensor) -> Any:
        return self.run(self.model, x[:, : self.vis_channels], x[:, self.vis_channels:])


def grad_cam(model: nn.Module, task: str, vis: torch.Tensor, ir: torch.Tensor, valid: tuple[int, int],
             layers: list[nn.Module], grid: tuple[int, int], classes: Sequence[str],
             cam_class: str | None) -> tuple[np.ndarray | None, str]:
    """Grad-CAM of the task output at ``layers`` (the last block of each branch) for one padded pair.

    Returns the map over the padded input (``(Hp, Wp)``, in [0, 1]) or None, and what it was computed for.
    """
    from pytorch_grad_cam import GradCAM

    spec = cam_spec(task)
    wrapper = _PairInput(model, spec.forward, vis.shape[1])
    x = torch.cat([vis, ir], dim=1)
    with torch.no_grad():
        outputs = wrapper(x)
    targets, what = spec.targets(outputs[0].detach().cpu() if isinstance(outputs, torch.Tensor) else
                                 {k: v.detach().cpu() for k, v in outputs[0].items()}, valid, classes, cam_class)
    if targets is None:
        return None, what

    def reshape(t: torch.Tensor) -> torch.Tensor:  # the block output (or its gradient) -> (B, C, h, w)
        return tokens_to_map(*patch_tokens(t, grid))

    requires = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)  # gradients are wanted at the block outputs only, not for every weight
    cam = GradCAM(model=wrapper, target_layers=layers, reshape_transform=reshape)
    try:
        # the input needs a gradient so that the block outputs have one even where every weight is frozen
        maps = cam(input_tensor=x.clone().requires_grad_(True), targets=targets)
    finally:
        cam.activations_and_grads.release()
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
    return maps[0], what


def cam_overlay(rgb: np.ndarray, cam: np.ndarray | None) -> np.ndarray:
    """The map as a JET heat map over the visible image (grad-cam's ``show_cam_on_image``); grey when None."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    if cam is None:
        return (0.5 * rgb).astype(np.uint8)
    return show_cam_on_image(rgb.astype(np.float32) / 255.0, cam.astype(np.float32), use_rgb=True)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 1 | 3) uint8 -> (H, W, 3) uint8."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return a[..., :3]
