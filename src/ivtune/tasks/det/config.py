"""The ``data:`` section of detection configs: the shared keys plus the keep-ratio multi-scale resize."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import DataConfig

DEFAULT_TRAIN_SIZES = list(range(480, 801, 32))  # torchvision / detectron2 multi-scale training


@dataclass(kw_only=True)
class DetDataConfig(DataConfig):
    """Detection data keys (the shared ones are :class:`ivtune.config.DataConfig`'s).

    Attributes:
        train_sizes: shorter-side sizes; training draws one per sample (keep-ratio resize).
        test_size: evaluation shorter side.
        max_size: cap of the longer side, training and evaluation.
        crop: training crop ``[H, W]`` after the resize (boxes clipped, boxes left without area dropped); null for
            none.
    """

    train_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_TRAIN_SIZES))
    test_size: int = 800
    max_size: int = 1333
    crop: list[int] | None = None

    def _check(self) -> None:
        super()._check()
        if not self.train_sizes or min(self.train_sizes) <= 0:
            self._bad("train_sizes", f"expected a non-empty list of positive sizes, got {self.train_sizes}")
        self._positive("test_size")
        self._positive("max_size")
        if self.crop is not None and (len(self.crop) != 2 or min(self.crop) <= 0):
            self._bad("crop", f"expected two positive ints [H, W] (or null), got {self.crop}")
