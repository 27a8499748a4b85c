"""The ``data:`` section of SOD configs: the shared keys plus the authors' resize and augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import DataConfig


@dataclass(kw_only=True)
class SODDataConfig(DataConfig):
    """SOD data keys (docs/METHOD.md section 9.1; the shared ones are :class:`ivtune.config.DataConfig`'s).

    Attributes:
        size: every image (and the training ground truth) is resized to ``[H, W]`` (384 x 384 in the recipes);
            null keeps the input size (evaluation pads to the patch multiple).
        crop_border: the training crop removes up to this many pixels per dimension; 0 disables it.
        rotation: training rotation range in degrees, ``[-rotation, rotation)``.
        rotation_p: probability of that rotation.
        gt_noise: training only: fraction of mask pixels set to random 0 / 1 after resizing (authors: 0.0015).
        roots: folder of each other SOD dataset a split may name as ``DATASET/SPLIT`` (``vt821/test``).
    """

    size: list[int] | None = None
    crop_border: int = 30
    rotation: float = 15.0
    rotation_p: float = 0.2
    gt_noise: float = 0.0
    roots: dict[str, str] = field(default_factory=dict)

    def _check(self) -> None:
        super()._check()
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            self._bad("size", f"expected two positive ints [H, W] (or null), got {self.size}")
        self._at_least("crop_border", 0)
        if not 0.0 <= self.rotation_p <= 1.0:
            self._bad("rotation_p", f"is a probability in [0, 1], got {self.rotation_p}")
        if not 0.0 <= self.gt_noise < 1.0:
            self._bad("gt_noise", f"is a fraction in [0, 1), got {self.gt_noise}")
