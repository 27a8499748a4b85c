"""The paired detection dataset: records, box sanitising (clip / drop, counted), COCO export and the scan report.

``load_raw(i)`` gives::

    {"vis": uint8 (H, W, 3), "ir": uint8 (H, W), "boxes": float32 (N, 4) xyxy pixels, "labels": int64 (N,) 0-based,
     "ignore": bool (N,), "meta": {"name", "vis_path", "ir_path", "ann_path", "condition", "orig_size": (H, W),
     "image_id": int}}

Box rules (applied once per image, cached): normalised (YOLO) boxes are scaled by the image size; boxes reaching
outside the image are clipped to it (``clipped_boxes`` counts the kept boxes that clipping changed); boxes of zero
width or height after clipping (degenerate, or entirely outside) are dropped (``dropped_boxes``). Images without
boxes stay in the dataset as negatives.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ...errors import ConfigError, DataError
from ..io import read_gray, read_rgb
from ..pairs import pair_size_problem
from .formats import RawBoxes

DetTransform = Callable[..., dict[str, Any]]
PROBLEM_KINDS = ("missing", "unreadable", "size_mismatch", "annotation")


@dataclass(frozen=True, eq=False)
class DetRecord:
    """One VIS/IR pair and its annotation.

    Attributes:
        name: sample name (file stem).
        vis_path: visible image file.
        ir_path: infrared image file.
        ann_path: annotation file (for messages; a COCO json is shared by many records), or None.
        condition: ``"day"`` / ``"night"`` / None.
        image_id: COCO image id (unique in the dataset).
        size: (H, W) the annotation states (COCO, VOC), checked against the image; None reads the image header.
        boxes: the parsed annotation, or None to parse ``ann_path`` lazily with the dataset's ``read_annotation``.
    """

    name: str
    vis_path: str
    ir_path: str
    ann_path: str | None = None
    condition: str | None = None
    image_id: int = 0
    size: tuple[int, int] | None = None
    boxes: RawBoxes | None = None


@dataclass
class _Resolved:
    boxes: np.ndarray  # (N, 4) float32 pixels
    labels: np.ndarray
    ignore: np.ndarray
    clipped: int
    dropped: int
    size: tuple[int, int] | None


def sanitize_boxes(raw: RawBoxes, size: tuple[int, int] | None) -> _Resolved:
    """Pixel boxes from ``raw``: scale normalised ones, clip to ``size`` (H, W), drop zero-area ones (counted)."""
    xyxy = raw.xyxy.astype(np.float64).copy()
    if raw.normalized:
        if size is None:
            raise DataError("normalised (YOLO) boxes need the image size, but the image could not be read")
        xyxy *= np.array([size[1], size[0], size[1], size[0]], np.float64)
    clipped = 0
    if size is not None and len(xyxy):
        h, w = size
        before = xyxy.copy()
        xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
        xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
        changed = (np.abs(xyxy - before) > 1e-6).any(1)
    else:
        changed = np.zeros(len(xyxy), bool)
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    clipped = int((changed & keep).sum())
    return _Resolved(xyxy[keep].astype(np.float32), raw.labels[keep].astype(np.int64), raw.ignore[keep].astype(bool),
                     clipped, int((~keep).sum()), size)


def image_size(path: str) -> tuple[int, int] | None:
    """(H, W) from the image header without decoding, or None when the file is missing or unreadable."""
    try:
        with Image.open(path) as img:
            return int(img.height), int(img.width)
    except (OSError, ValueError):
        return None


def det_to_tensors(sample: dict[str, Any]) -> dict[str, Any]:
    """Raw sample -> tensors: ``vis`` (3, H, W) and ``ir`` (1, H, W) in [0, 1], boxes / labels / ignore tensors;
    ``meta["scale"]`` set to ``(1.0, 1.0)`` when absent (no resize)."""
    out = dict(sample)
    if isinstance(sample["vis"], np.ndarray):
        out["vis"] = torch.from_numpy(np.ascontiguousarray(sample["vis"].transpose(2, 0, 1))).float().div_(255.0)
    if isinstance(sample["ir"], np.ndarray):
        ir = sample["ir"][..., 0] if sample["ir"].ndim == 3 else sample["ir"]
        out["ir"] = torch.from_numpy(np.ascontiguousarray(ir))[None].float().div_(255.0)
    for key, dtype in (("boxes", torch.float32), ("labels", torch.int64), ("ignore", torch.bool)):
        if isinstance(sample.get(key), np.ndarray):
            out[key] = torch.as_tensor(sample[key], dtype=dtype).clone()
    if isinstance(out.get("boxes"), torch.Tensor):
        out["boxes"] = out["boxes"].reshape(-1, 4)
    if isinstance(out.get("meta"), dict):
        out["meta"] = dict(out["meta"])
        out["meta"].setdefault("scale", (1.0, 1.0))
    return out


@dataclass
class DetScanReport:
    """The result of :meth:`PairedDetDataset.scan`.

    Attributes:
        dataset: dataset name.
        classes: class names.
        num_pairs: records scanned.
        num_ok: records with no problem.
        conditions: record count per condition (``"unknown"`` when none).
        boxes_per_class: kept (non-ignore) boxes per class name.
        ignore_regions: kept ignore boxes (KAIST ignore regions, COCO crowd, VOC difficult).
        empty_images: images with no box at all (kept as negatives).
        clipped_boxes: boxes clipped to the image (kept).
        dropped_boxes: zero-area boxes dropped.
        clipped_files: ``(ann_path or name, clipped, dropped)`` for every image where boxes were clipped or dropped.
        problems: ``(kind, path, detail)``; kinds are ``PROBLEM_KINDS``.
    """

    dataset: str
    classes: tuple[str, ...] = ()
    num_pairs: int = 0
    num_ok: int = 0
    conditions: dict[str, int] = field(default_factory=dict)
    boxes_per_class: dict[str, int] = field(default_factory=dict)
    ignore_regions: int = 0
    empty_images: int = 0
    clipped_boxes: int = 0
    dropped_boxes: int = 0
    clipped_files: list[tuple[str, int, int]] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no record has a problem (clipped / dropped boxes are handled, not problems)."""
        return not self.problems

    @property
    def num_boxes(self) -> int:
        return sum(self.boxes_per_class.values())

    def format(self, shown: int = 20) -> str:
        """A readable multi-line report."""
        conds = ", ".join(f"{k} {v}" for k, v in sorted(self.conditions.items())) or "none"
        per_class = ", ".join(f"{k} {v}" for k, v in self.boxes_per_class.items()) or "none"
        lines = [
            f"Dataset {self.dataset}: {self.num_pairs} pairs, {self.num_ok} ok ({conds}).",
            f"Boxes: {self.num_boxes} ({per_class}); ignore regions {self.ignore_regions}; "
            f"images without boxes {self.empty_images}.",
            f"Clipped to the image: {self.clipped_boxes} box(es); dropped (zero area): {self.dropped_boxes} box(es).",
        ]
        for path, c, d in self.clipped_files[:shown]:
            lines.append(f"    {path}: {c} clipped, {d} dropped")
        if len(self.clipped_files) > shown:
            lines.append(f"    ... and {len(self.clipped_files) - shown} more file(s)")
        lines.append("OK: no problems found." if self.ok else f"{len(self.problems)} problem(s):")
        groups: dict[str, list[tuple[str, str]]] = {}
        for kind, path, detail in self.problems:
            groups.setdefault(kind, []).append((path, detail))
        for kind in sorted(groups, key=lambda k: PROBLEM_KINDS.index(k) if k in PROBLEM_KINDS else 99):
            lines.append(f"  {kind} ({len(groups[kind])}):")
            lines.extend(f"    {path}: {detail}" for path, detail in groups[kind])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


class PairedDetDataset(Dataset):
    """VIS/IR pairs with boxes, in the sample contract of this module.

    Args:
        records: the pairs, in order; ``image_id`` 0 is replaced by ``index + 1``.
        classes: class names; label ``i`` is ``classes[i]``.
        transform: called as ``transform(load_raw(i))``; None gives :func:`det_to_tensors` ([0, 1], no resizing).
        strict: raise a :class:`DataError` listing every missing file, and parse every annotation at construction
            (an unknown class or bad line fails here); ``False`` keeps bad records for :meth:`scan`.
        name: dataset name used in messages.
        read_annotation: ``record -> RawBoxes`` for records whose ``boxes`` is None.
        ir_high_depth: scaling of >8-bit thermal files, see :func:`ivtune.data.io.read_gray`.
        eager: with ``strict``, parse all annotations at construction (False for generated data).
    """

    def __init__(
        self,
        records: Sequence[DetRecord],
        classes: Sequence[str],
        transform: DetTransform | None = None,
        strict: bool = True,
        name: str = "det",
        read_annotation: Callable[[DetRecord], RawBoxes] | None = None,
        ir_high_depth: str = "minmax",
        eager: bool = True,
    ):
        recs = []
        for i, r in enumerate(records):
            if not r.image_id:
                r = DetRecord(r.name, r.vis_path, r.ir_path, r.ann_path, r.condition, i + 1, r.size, r.boxes)
            recs.append(r)
        ids = Counter(r.image_id for r in recs)
        dup = [k for k, v in ids.items() if v > 1]
        if dup:
            raise DataError(f"{name}: image ids {dup[:10]} occur more than once; COCO export needs unique ids.")
        self.records = recs
        self.classes = tuple(classes)
        self.transform = transform
        self.strict = strict
        self.name = name
        self.ir_high_depth = ir_high_depth
        self._read_annotation = read_annotation
        self._resolved: dict[int, _Resolved] = {}
        if strict:
            self._raise_on_missing()
            if eager:
                self._raise_on_bad_annotations()

    # ------------------------------------------------------------------ files
    def files(self, index: int) -> list[tuple[str, str]]:
        """``(role, path)`` of the files of record ``index``: ``vis``, ``ir`` and ``ann`` (when not shared)."""
        rec = self.records[index]
        out = [("vis", rec.vis_path), ("ir", rec.ir_path)]
        if rec.ann_path is not None and rec.boxes is None:
            out.append(("annotation", rec.ann_path))
        return out

    def missing_files(self, index: int) -> list[tuple[str, str]]:
        return [(role, p) for role, p in self.files(index) if not os.path.isfile(p)]

    def _raise_on_missing(self) -> None:
        lines = []
        for i, rec in enumerate(self.records):
            for role, path in self.missing_files(i):
                partner = rec.ir_path if role == "vis" else rec.vis_path
                lines.append(f"  missing {role} {path} (pair {rec.name!r}, partner {partner})")
        if lines:
            raise DataError(
                f"{self.name}: {len(lines)} file(s) missing for {len(self.records)} pair(s):\n" + "\n".join(lines)
                + "\nRestore the files, or build with strict=False and call .scan() for a full report."
            )

    def _raise_on_bad_annotations(self) -> None:
        errors = []
        for i in range(len(self.records)):
            try:
                self.annotation(i)
            except DataError as exc:
                errors.append(str(exc))
        if len(errors) == 1:
            raise DataError(f"{self.name}: {errors[0]}")
        if errors:
            raise DataError(f"{self.name}: {len(errors)} bad annotation file(s):\n  " + "\n  ".join(errors[:20])
                            + ("\n  ..." if len(errors) > 20 else ""))

    # ------------------------------------------------------------------ annotations
    def raw_annotation(self, index: int) -> RawBoxes:
        """The parsed, unsanitised annotation of record ``index``."""
        rec = self.records[index]
        if rec.boxes is not None:
            return rec.boxes
        if self._read_annotation is None:
            return RawBoxes()
        return self._read_annotation(rec)

    def image_size(self, index: int) -> tuple[int, int] | None:
        """(H, W) of record ``index``: from the annotation, else the visible (or infrared) image header."""
        rec = self.records[index]
        return rec.size or image_size(rec.vis_path) or image_size(rec.ir_path)

    def annotation(self, index: int) -> _Resolved:
        """Sanitised pixel boxes of record ``index`` (cached); raises DataError naming the annotation file."""
        if index not in self._resolved:
            rec = self.records[index]
            raw = self.raw_annotation(index)
            try:
                self._resolved[index] = sanitize_boxes(raw, self.image_size(index))
            except DataError as exc:
                raise DataError(f"{rec.ann_path or rec.name}: {exc}") from exc
        return self._resolved[index]

    def _count(self, attr: str) -> int:
        total = 0
        for i in range(len(self.records)):
            try:
                total += getattr(self.annotation(i), attr)
            except DataError:
                pass
        return total

    @property
    def clipped_boxes(self) -> int:
        """Boxes clipped to their image (and kept), over the whole dataset."""
        return self._count("clipped")

    @property
    def dropped_boxes(self) -> int:
        """Zero-area boxes dropped, over the whole dataset."""
        return self._count("dropped")

    # ------------------------------------------------------------------ reading
    def read_vis(self, index: int) -> np.ndarray:
        return read_rgb(self.records[index].vis_path)

    def read_ir(self, index: int) -> np.ndarray:
        return read_gray(self.records[index].ir_path, self.ir_high_depth)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def _size_problem(self, index: int, vis_shape: tuple[int, ...]) -> str | None:
        rec = self.records[index]
        if rec.size is not None and tuple(rec.size) != tuple(vis_shape[:2]):
            return (f"Annotation {rec.ann_path} gives image {rec.name!r} size {rec.size} (H, W) but {rec.vis_path} is "
                    f"{tuple(vis_shape[:2])}. Fix the annotation or the pairing.")
        return None

    def load_raw(self, index: int) -> dict[str, Any]:
        """Read and check record ``index``: the untransformed sample with numpy arrays (module docstring)."""
        rec = self.records[index]
        vis, ir = self.read_vis(index), self.read_ir(index)
        problem = pair_size_problem(rec, vis.shape, ir.shape) or self._size_problem(index, vis.shape)  # type: ignore[arg-type]
        if problem is not None:
            raise DataError(problem)
        ann = self.annotation(index)
        return {
            "vis": vis, "ir": ir, "boxes": ann.boxes.copy(), "labels": ann.labels.copy(), "ignore": ann.ignore.copy(),
            "meta": {"name": rec.name, "vis_path": rec.vis_path, "ir_path": rec.ir_path, "ann_path": rec.ann_path,
                     "condition": rec.condition, "orig_size": (int(vis.shape[0]), int(vis.shape[1])),
                     "image_id": rec.image_id},
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_raw(index)
        transform = self.transform if self.transform is not None else det_to_tensors
        out = transform(sample)
        if not isinstance(out.get("vis"), torch.Tensor) or not isinstance(out.get("boxes"), torch.Tensor):
            raise ConfigError(
                f"{self.name}: transform {transform!r} must return tensors 'vis', 'ir' and 'boxes'; end the pipeline "
                "with a tensor conversion (build_det_transforms does)."
            )
        return out

    @property
    def conditions(self) -> list[str | None]:
        return [r.condition for r in self.records]

    # ------------------------------------------------------------------ COCO export and scan
    def to_coco(self) -> dict[str, Any]:
        """COCO ground truth for pycocotools: ``images`` (id, file_name, width, height), ``annotations`` (bbox xywh,
        area, iscrowd = 1 for ignore regions, category_id = label + 1) and ``categories``.

        Raises:
            DataError: an image size or annotation cannot be read (build with ``strict`` and fix the scan first).
        """
        images, anns = [], []
        for i, rec in enumerate(self.records):
            ann = self.annotation(i)
            size = ann.size or self.image_size(i)
            if size is None:
                raise DataError(f"{self.name}: cannot read the size of {rec.vis_path} for the COCO export.")
            images.append({"id": rec.image_id, "file_name": os.path.basename(rec.vis_path), "height": size[0],
                           "width": size[1], "name": rec.name, "condition": rec.condition})
            for box, label, ign in zip(ann.boxes.tolist(), ann.labels.tolist(), ann.ignore.tolist(), strict=True):
                w, h = box[2] - box[0], box[3] - box[1]
                anns.append({"id": len(anns) + 1, "image_id": rec.image_id, "category_id": int(label) + 1,
                             "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": int(ign)})
        cats = [{"id": k + 1, "name": n} for k, n in enumerate(self.classes)]
        return {"info": {"description": f"ivtune {self.name}"}, "images": images, "annotations": anns,
                "categories": cats}

    def scan(self) -> DetScanReport:
        """Check every record without stopping: missing partners, unreadable images, VIS/IR (and annotation) size
        mismatches, bad annotations; count boxes per class, empty images, clipped and dropped boxes."""
        report = DetScanReport(dataset=self.name, classes=self.classes, num_pairs=len(self))
        report.conditions = dict(Counter(c or "unknown" for c in self.conditions))
        per_class = Counter()
        seen: set[tuple[str, str]] = set()

        def add(kind: str, path: str, detail: str) -> None:
            if (kind, path) not in seen:
                seen.add((kind, path))
                report.problems.append((kind, path, detail))

        for i, rec in enumerate(self.records):
            before = len(report.problems)
            missing = dict(self.missing_files(i))
            for role, path in missing.items():
                partner = rec.ir_path if role == "vis" else rec.vis_path
                add("missing", path, f"{role} file of pair {rec.name!r} not found (partner {partner})")
            arrays = {}
            for role, reader, path in (("vis", self.read_vis, rec.vis_path), ("ir", self.read_ir, rec.ir_path)):
                if role in missing:
                    continue
                try:
                    arrays[role] = reader(i)
                except DataError as exc:
                    add("unreadable", path, str(exc))
            if "vis" in arrays and "ir" in arrays and (p := pair_size_problem(rec, arrays["vis"].shape,
                                                                               arrays["ir"].shape)):
                add("size_mismatch", rec.ir_path, p)
            if "vis" in arrays and (p := self._size_problem(i, arrays["vis"].shape)):
                add("size_mismatch", rec.ann_path or rec.vis_path, p)
            if "annotation" not in missing:
                try:
                    ann = self.annotation(i)
                except DataError as exc:
                    add("annotation", rec.ann_path or rec.name, str(exc))
                else:
                    per_class.update(ann.labels[~ann.ignore].tolist())
                    report.ignore_regions += int(ann.ignore.sum())
                    report.empty_images += int(len(ann.labels) == 0)
                    report.clipped_boxes += ann.clipped
                    report.dropped_boxes += ann.dropped
                    if ann.clipped or ann.dropped:
                        report.clipped_files.append((rec.ann_path or rec.name, ann.clipped, ann.dropped))
            if len(report.problems) == before:
                report.num_ok += 1
        report.boxes_per_class = {n: int(per_class.get(k, 0)) for k, n in enumerate(self.classes)}
        return report

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, pairs={len(self)}, classes={self.classes})"
