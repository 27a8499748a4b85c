"""What both detectors share (:class:`~ivtune.tasks.det.model.DetectionModel` for the torchvision heads,
:class:`~ivtune.tasks.det.rtdetr.RTDETRDetector`): checking a batch of VIS/IR pairs, its padded size, ``predict``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ...errors import InputShapeError


class PairDetector(nn.Module):
    """Base of the detectors: ``forward(vis, ir, targets=None)`` on lists of (C, H, W) pairs of any sizes.

    Subclasses set ``size_divisible``: the padded batch size is a multiple of it.
    """

    size_divisible: int

    def check_pairs(self, vis: Sequence[torch.Tensor] | torch.Tensor, ir: Sequence[torch.Tensor] | torch.Tensor, *,
                    vis_channels: int | None = None
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]], tuple[int, int]]:
        """VIS and IR as lists of (C, H, W) images, every image's (h, w) and the batch's padded (H, W).

        Raises:
            InputShapeError: not one IR image per visible image, an image that is not (C, H, W), a visible image
                without ``vis_channels`` channels (when given) or a pair of two sizes; the message names the pair.
        """
        if isinstance(vis, torch.Tensor) and vis.ndim == 4:
            vis = list(vis)
        if isinstance(ir, torch.Tensor) and ir.ndim == 4:
            ir = list(ir)
        if len(vis) != len(ir) or not vis:
            raise InputShapeError(f"give one IR image per visible image, got {len(vis)} visible and {len(ir)} IR.")
        sizes = []
        for i, (v, t) in enumerate(zip(vis, ir, strict=True)):
            if v.ndim != 3 or t.ndim != 3:
                raise InputShapeError(f"pair {i}: images are (C, H, W) tensors, got vis {tuple(v.shape)} and ir "
                                      f"{tuple(t.shape)}.")
            if vis_channels is not None and v.shape[0] != vis_channels:
                raise InputShapeError(f"pair {i}: vis must have {vis_channels} channels, got {v.shape[0]}.")
            if v.shape[-2:] != t.shape[-2:]:
                raise InputShapeError(f"pair {i}: vis is {tuple(v.shape[-2:])} but ir is {tuple(t.shape[-2:])}; resize "
                                      "or register the IR image to the visible one.")
            # the shape's own entries (ints in eager), not int(): under torch.export they stay symbolic, so
            # `ivtune export --dynamic` keeps height / width free; -(-n // d) is ceil(n / d) in integers
            sizes.append((v.shape[-2], v.shape[-1]))
        d = self.size_divisible
        padded = (-(-max(h for h, _ in sizes) // d) * d, -(-max(w for _, w in sizes) // d) * d)
        return list(vis), list(ir), sizes, padded

    @torch.no_grad()
    def predict(self, vis: torch.Tensor | Sequence[torch.Tensor], ir: torch.Tensor | Sequence[torch.Tensor],
                score_thresh: float | None = None) -> list[dict[str, torch.Tensor]]:
        """Detections for one pair (CHW tensors) or a list / batch of pairs, in eval mode; the mode is restored."""
        single = isinstance(vis, torch.Tensor) and vis.ndim == 3
        was_training = self.training
        self.eval()
        try:
            out = self([vis] if single else vis, [ir] if single else ir)
        finally:
            self.train(was_training)
        if score_thresh is not None:
            out = [{k: v[d["scores"] >= score_thresh] for k, v in d.items()} for d in out]
        return out
