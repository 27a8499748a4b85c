"""The ``data:`` section of segmentation configs: the shared keys plus the random resize and crop."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import DataConfig


@dataclass(kw_only=True)
class SegDataConfig(DataConfig):
    """Segmentation data keys (the shared ones are :class:`ivtune.config.DataConfig`'s).

    Attributes:
        crop_size: training crop ``[H, W]`` after the random resize; null keeps the resized image.
        scale_range: random resize factor range ``[low, high]``; ``[1, 1]`` disables it.
    """

    crop_size: list[int] | None = None
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])

    def _check(self) -> None:
        super()._check()
        if self.crop_size is not None and (len(self.crop_size) != 2 or min(self.crop_size) <= 0):
            self._bad("crop_size", f"expected two positive ints [H, W] (or null), got {self.crop_size}")
        lo_hi = self.scale_range
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
            self._bad("scale_range", f"expected [low, high] with 0 < low <= high, got {lo_hi}")
