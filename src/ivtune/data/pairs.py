"""The paired-sample contract shared by every task, the base segmentation dataset and the batch collate.

A dataset item is a dict::

    {"vis": FloatTensor (3, H, W), "ir": FloatTensor (1 or 3, H, W), "mask": LongTensor (H, W),   # mask: seg only
     "meta": {"name": str, "vis_path": str, "ir_path": str, "label_path": str | None,
              "condition": "day" | "night" | "fog" | None, "orig_size": (H, W)}}

Files are checked where they are read: a VIS/IR size mismatch, a label of another size, or label values outside the
class list raise :class:`ivtune.errors.DataError` naming the files. :func:`ivtune.data.check.scan_seg_dataset` runs the
same checks over every record and collects the problems instead of stopping at the first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .io import read_gray, read_label, read_rgb

if TYPE_CHECKING:
    from .check import ScanReport

CONDITIONS = ("day", "night", "fog")
# MFNet / MSRS names end in D (day) or N (night); the synthetic writer adds F (fog).
CONDITION_SUFFIXES = {"D": "day", "N": "night", "F": "fog"}

# Distinct colours for datasets without a published palette; cycled when there are more classes.
_DEFAULT_COLOURS = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class PairRecord:
    """One VIS/IR pair on disk. Paths may point at missing files when a dataset is built with ``strict=False``."""

    name: str
    vis_path: str
    ir_path: str
    label_path: str | None = None
    condition: str | None = None


def condition_from_name(name: str, suffixes: dict[str, str] | None = None) -> str | None:
    """``"day"``/``"night"``/``"fog"`` from the last letter of a sample name (``00123D``), else None."""
    suffixes = CONDITION_SUFFIXES if suffixes is None else suffixes
    return suffixes.get(name[-1:].upper()) if name else None


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """A fixed list of distinct RGB colours, class 0 black."""
    return [_DEFAULT_COLOURS[i % len(_DEFAULT_COLOURS)] for i in range(num_classes)]


def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    return int(shape[0]), int(shape[1])


def pair_size_problem(rec: PairRecord, vis_shape: tuple[int, ...], ir_shape: tuple[int, ...]) -> str | None:
    """The VIS/IR size-mismatch message for ``rec``, or None when both are the same size."""
    if _hw(vis_shape) == _hw(ir_shape):
        return None
    return (
        f"VIS/IR size mismatch in pair {rec.name!r}: vis {rec.vis_path} is {_hw(vis_shape)} (H, W) but ir "
        f"{rec.ir_path} is {_hw(ir_shape)}. The pair must be pixel-aligned: register and resize the IR image to the "
        "visible one."
    )


def label_size_problem(rec: PairRecord, vis_shape: tuple[int, ...], mask_shape: tuple[int, ...]) -> str | None:
    """The label-size-mismatch message for ``rec``, or None when the label matches the visible image."""
    if _hw(vis_shape) == _hw(mask_shape):
        return None
    return (
        f"Label size mismatch in pair {rec.name!r}: label {rec.label_path} is {_hw(mask_shape)} (H, W) but vis "
        f"{rec.vis_path} is {_hw(vis_shape)}. Resize the label with nearest-neighbour or fix the pairing."
    )


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


class PairedSegDataset(Dataset):
    """A list of VIS/IR(/label) file pairs plus the class list, giving samples in the contract of this module.

    Subclasses change how files are read (``read_vis`` / ``read_ir`` / ``read_images`` / ``read_label``) and keep
    the rest: ``__getitem__`` reads, checks the pair, then applies ``transform``.

    Args:
        records: the pairs, in order.
        classes: class names; label value ``i`` is ``classes[i]``.
        palette: one RGB colour per class, for colour masks; a default palette when None.
        ignore_index: label value excluded from the loss and metrics (may be a class index, e.g. 0 to leave an
            "unlabeled" class out of training).
        transform: called with ``{"vis": uint8 (H, W, 3), "ir": uint8 (H, W), "mask": (H, W) (if labelled),
            "meta": dict}`` (numpy arrays) and returning the tensor sample; see
            :func:`ivtune.data.transforms.build_seg_transforms`. When None, :func:`ivtune.data.transforms.to_tensors`
            (values scaled to [0, 1], no normalisation).
        strict: raise a :class:`DataError` listing every missing file; ``False`` keeps incomplete records so that
            :meth:`scan` can report them (reading such a record still raises).
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
        self.records = list(records)
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
        self.transform = transform
        self.strict = strict
        self.name = name
        self.ir_high_depth = ir_high_depth
        if strict:
            self._raise_on_missing()

    # ------------------------------------------------------------------ files
    def files(self, index: int) -> list[tuple[str, str]]:
        """``(role, path)`` of every file record ``index`` needs; roles are ``vis``, ``ir``, ``label``."""
        rec = self.records[index]
        out = [("vis", rec.vis_path)]
        if rec.ir_path != rec.vis_path:  # packed RGB+T files hold both images
            out.append(("ir", rec.ir_path))
        if rec.label_path is not None:
            out.append(("label", rec.label_path))
        return out

    def missing_files(self, index: int) -> list[tuple[str, str]]:
        """``(role, path)`` of the files of record ``index`` that do not exist."""
        return [(role, p) for role, p in self.files(index) if not os.path.isfile(p)]

    def _raise_on_missing(self) -> None:
        lines = []
        for i, rec in enumerate(self.records):
            for role, path in self.missing_files(i):
                lines.append(f"  missing {role} {path} (pair {rec.name!r}, vis {rec.vis_path})")
        if lines:
            raise DataError(
                f"{self.name}: {len(lines)} file(s) missing for {len(self.records)} pair(s):\n" + "\n".join(lines)
                + "\nRestore the files, or build with strict=False and call .scan() for a full report."
            )

    # ------------------------------------------------------------------ reading
    def read_vis(self, index: int) -> np.ndarray:
        """The visible image of record ``index``, ``(H, W, 3)`` uint8."""
        return read_rgb(self.records[index].vis_path)

    def read_ir(self, index: int) -> np.ndarray:
        """The thermal image of record ``index``, ``(H, W)`` uint8."""
        return read_gray(self.records[index].ir_path, self.ir_high_depth)

    def read_images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(vis, ir)`` of record ``index``; subclasses with packed files read them once here."""
        return self.read_vis(index), self.read_ir(index)

    def read_label(self, index: int) -> np.ndarray | None:
        """The label map of record ``index`` (``(H, W)`` integer array), or None for an unlabelled record."""
        path = self.records[index].label_path
        return None if path is None else read_label(path)

    # ------------------------------------------------------------------ dataset protocol
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def load_raw(self, index: int) -> dict[str, Any]:
        """Read and check record ``index``; the untransformed sample with numpy arrays."""
        rec = self.records[index]
        vis, ir = self.read_images(index)
        problem = pair_size_problem(rec, vis.shape, ir.shape)
        mask = self.read_label(index)
        if problem is None and mask is not None:
            problem = label_size_problem(rec, vis.shape, mask.shape) or label_value_problem(
                rec, mask, self.num_classes, self.ignore_index)
        if problem is not None:
            raise DataError(problem)
        sample: dict[str, Any] = {"vis": vis, "ir": ir}
        if mask is not None:
            sample["mask"] = mask
        sample["meta"] = {
            "name": rec.name, "vis_path": rec.vis_path, "ir_path": rec.ir_path, "label_path": rec.label_path,
            "condition": rec.condition, "orig_size": _hw(vis.shape),
        }
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        from .transforms import to_tensors  # transforms imports nothing from here; keep the import graph one-way

        sample = self.load_raw(index)
        transform = self.transform if self.transform is not None else to_tensors
        out = transform(sample)
        if not isinstance(out.get("vis"), torch.Tensor) or not isinstance(out.get("ir"), torch.Tensor):
            raise ConfigError(
                f"{self.name}: transform {transform!r} must return a dict with tensors 'vis' and 'ir', got "
                f"{type(out.get('vis')).__name__} / {type(out.get('ir')).__name__}. End the pipeline with a tensor "
                "conversion (build_seg_transforms does)."
            )
        return out

    def scan(self) -> ScanReport:
        """Check every record without stopping at the first problem; see :func:`ivtune.data.check.scan_seg_dataset`."""
        from .check import scan_seg_dataset

        return scan_seg_dataset(self)

    @property
    def conditions(self) -> list[str | None]:
        """The condition of every record, in order."""
        return [r.condition for r in self.records]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, pairs={len(self)}, classes={self.num_classes}, "
            f"ignore_index={self.ignore_index})"
        )


_STACKED_KEYS = ("vis", "ir", "mask")


def collate_pairs(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: tensors of equal shape are stacked, ``meta`` becomes a list of dicts, other values lists.

    Args:
        batch: samples in the contract of this module, all with the same keys.

    Returns:
        ``{"vis": (B, 3, H, W), "ir": (B, C, H, W), "mask": (B, H, W) (if present), "meta": [dict, ...]}``.

    Raises:
        DataError: the batch is empty, samples have different keys, or ``vis``/``ir``/``mask`` differ in shape.
    """
    if len(batch) == 0:
        raise DataError("collate_pairs got an empty batch.")
    names = [s.get("meta", {}).get("name", f"#{i}") for i, s in enumerate(batch)]
    keys = list(batch[0].keys())
    for s, n in zip(batch, names, strict=True):
        if set(s.keys()) != set(keys):
            raise DataError(
                f"Cannot batch samples with different keys: {names[0]!r} has {sorted(keys)} but {n!r} has "
                f"{sorted(s.keys())}. Mix labelled and unlabelled samples in separate loaders."
            )
    out: dict[str, Any] = {}
    for key in keys:
        if key == "meta":
            continue
        values = [s[key] for s in batch]
        if all(isinstance(v, torch.Tensor) for v in values):
            shapes = [tuple(v.shape) for v in values]
            if len(set(shapes)) == 1:
                out[key] = torch.stack(values)
                continue
            if key in _STACKED_KEYS:
                detail = ", ".join(f"{n} {sh}" for n, sh in zip(names, shapes, strict=True))
                raise DataError(
                    f"Cannot batch {key!r} tensors of different shapes: {detail}. Use a fixed crop/resize size in "
                    "the transform, or batch size 1 for native-size evaluation."
                )
        elif key in _STACKED_KEYS:
            raise DataError(f"Sample key {key!r} must be a tensor to batch, got {type(values[0]).__name__}.")
        out[key] = values
    out["meta"] = [s.get("meta", {}) for s in batch]
    return out
