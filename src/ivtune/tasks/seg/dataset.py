"""The segmentation dataset: VIS/IR pairs with a label map, the class list and the label checks.

The target of a record is its label map, ``(H, W)`` integer class indices (``ignore_index`` for unlabelled pixels).
A label of another size than the visible image, or with values outside the class list, is an error naming the file;
the scan reports every such file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...data.io import read_label
from ...data.pairs import PairedDataset, PairRecord, Transform, default_palette
from ...data.scan import ScanReport, size_problem
from ...errors import ConfigError


def label_size_problem(rec: PairRecord, vis_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> str | None:
    """The label-size-mismatch message for ``rec``, or None when the label matches the visible image."""
    return size_problem("Label size mismatch", rec, ("label", rec.label_path, mask_shape),
                        ("vis", rec.vis_path, vis_shape), "Resize the label with nearest-neighbour or fix the pairing.")


def bad_label_values(mask: np.ndarray, num_classes: int, ignore_index: int) -> list[int]:
    """Sorted label values that are neither a class index (0..num_classes-1) nor ``ignore_index``."""
    if mask.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))  # faster than np.unique on uint8
    else:
        present = np.unique(mask)
    return [int(v) for v in present if not (0 <= v < num_classes or v == ignore_index)]


def label_value_problem(rec: PairRecord, mask: np.ndarray, num_classes: int, ignore_index: int) -> str | None:
    """The out-of-range-label message for ``rec``, or None when every value is a class or ``ignore_index``."""
    bad = bad_label_values(mask, num_classes, ignore_index)
    if not bad:
        return None
    shown = ", ".join(map(str, bad[:20])) + (", ..." if len(bad) > 20 else "")
    return (
        f"Label {rec.label_path} has values [{shown}] outside the {num_classes} classes (0..{num_classes - 1}) and "
        f"!= ignore_index {ignore_index}. Check that the dataset name (class list) matches the files, or remap the "
        "label values."
    )


class PairedSegDataset(PairedDataset):
    """VIS/IR/label triples plus the class list (the sample's target is ``mask``).

    Subclasses change how files are read (``read_vis`` / ``read_ir`` / ``read_images`` / ``read_target``).

    Args:
        records: the pairs, in order (``label_path`` None for an unlabelled pair).
        classes: class names; label value ``i`` is ``classes[i]``.
        palette: one RGB colour per class, for colour masks; a default palette when None.
        ignore_index: label value excluded from the loss and metrics (may be a class index, e.g. 0 to leave an
            "unlabeled" class out of training).
        transform: the pipeline of :func:`ivtune.tasks.seg.transforms.build_seg_transforms`; None gives [0, 1]
            tensors.
        strict: raise a :class:`ivtune.errors.DataError` listing every missing file; ``False`` keeps them for
            :meth:`scan`.
        name: dataset name used in messages.
        ir_high_depth: scaling of >8-bit thermal files, see :func:`ivtune.data.io.read_gray`.
    """

    def __init__(
        self,
        records: Sequence[PairRecord],
        classes: Sequence[str],
        palette: Sequence[tuple[int, int, int]] | None = None,
        ignore_index: int = 255,
        transform: Transform | None = None,
        strict: bool = True,
        name: str = "paired",
        ir_high_depth: str = "minmax",
    ):
        super().__init__(records, transform, strict, name, ir_high_depth)
        self.classes = tuple(classes)
        if palette is None:
            palette = default_palette(len(self.classes))
        self.palette = [tuple(int(c) for c in rgb) for rgb in palette]
        if len(self.palette) < len(self.classes):
            raise ConfigError(
                f"{name}: palette has {len(self.palette)} colours for {len(self.classes)} classes; give one RGB tuple "
                "per class."
            )
        self.ignore_index = int(ignore_index)
        if strict:
            self._raise_on_missing()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # ------------------------------------------------------------------ target hooks
    def read_target_file(self, path: str) -> np.ndarray:
        """A label map: ``(H, W)`` integer class indices."""
        return read_label(path)

    def target_problems(self, index: int, vis_shape: tuple[int, ...], target: Any) -> list[tuple[str, str, str]]:
        rec = self.records[index]
        if problem := label_size_problem(rec, vis_shape, target.shape):
            return [("label_size_mismatch", rec.label_path, problem)]
        if problem := label_value_problem(rec, target, self.num_classes, self.ignore_index):
            return [("label_values", rec.label_path, problem)]
        return []

    def add_target(self, sample: dict[str, Any], index: int, target: Any) -> None:
        if target is not None:
            sample["mask"] = target

    def count_target(self, index: int, target: Any, vis_shape: tuple[int, ...]) -> None:
        labelled = int((target != self.ignore_index).sum())
        self.scan_counts["labels"] += 1
        self.scan_counts["pixels"] += int(target.size)
        self.scan_counts["labelled"] += labelled
        if not labelled:
            self.scan_files.append((self.records[index].label_path, f"every pixel is ignore_index {self.ignore_index}"))

    def scan_summary(self, report: ScanReport) -> None:
        """Labelled pixels counted; a split without one labelled pixel is a problem (nothing to learn or score)."""
        c = self.scan_counts
        share = f" ({100.0 * c['labelled'] / c['pixels']:.1f}%)" if c["pixels"] else ""
        report.values.update(labelled_pixels=int(c["labelled"]), unlabelled_files=len(self.scan_files))
        report.counts.append(f"Labelled pixels: {c['labelled']} of {c['pixels']}{share} in {c['labels']} label "
                             f"file(s); {len(self.scan_files)} file(s) without a labelled pixel.")
        report.details += self.scan_files
        report.add_no_targets(
            bool(c["labelled"]), self.target_folder(),
            f"not one labelled pixel in the {c['labels']} label file(s) of {self.name}: every value is "
            f"ignore_index {self.ignore_index} (or there are no labels). Nothing can be learnt or scored: check "
            "data.ignore_index and that the label files hold class indices.")

    def record_meta(self, index: int) -> dict[str, Any]:
        return {"label_path": self.records[index].label_path}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, pairs={len(self)}, classes={self.num_classes}, "
            f"ignore_index={self.ignore_index})"
        )
