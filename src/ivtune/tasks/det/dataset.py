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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...data.pairs import PairedDataset
from ...data.scan import AddProblem, ScanReport
from ...data.transforms import to_tensors
from ...errors import DataError
from .formats import RawBoxes

DetTransform = Callable[..., dict[str, Any]]


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
    """Raw sample -> tensors: :func:`ivtune.data.transforms.to_tensors` for the images, then boxes / labels /
    ignore as tensors; ``meta["scale"]`` set to ``(1.0, 1.0)`` when absent (no resize)."""
    out = to_tensors(sample)
    for key, dtype in (("boxes", torch.float32), ("labels", torch.int64), ("ignore", torch.bool)):
        if isinstance(sample.get(key), np.ndarray):
            out[key] = torch.as_tensor(sample[key], dtype=dtype).clone()
    if isinstance(out.get("boxes"), torch.Tensor):
        out["boxes"] = out["boxes"].reshape(-1, 4)
    if isinstance(out.get("meta"), dict):
        out["meta"] = dict(out["meta"])
        out["meta"].setdefault("scale", (1.0, 1.0))
    return out


class PairedDetDataset(PairedDataset):
    """VIS/IR pairs with boxes, in the sample contract of this module (the target of a record is its boxes).

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

    target_role = "annotation"

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
        super().__init__(recs, transform, strict, name, ir_high_depth)
        self.classes = tuple(classes)
        self._read_annotation = read_annotation
        self._resolved: dict[int, _Resolved] = {}
        self._scan_tally: Counter = Counter()
        if strict:
            self._raise_on_missing()
            if eager:
                self._raise_on_bad_annotations()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

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

    # ------------------------------------------------------------------ target hooks
    def target_path(self, index: int) -> str | None:
        rec = self.records[index]
        return rec.ann_path if rec.boxes is None else None  # a shared COCO json is not this record's own file

    def read_target(self, index: int) -> _Resolved:
        return self.annotation(index)

    def target_problems(self, index: int, vis_shape: tuple[int, ...], target: Any) -> list[tuple[str, str, str]]:
        rec = self.records[index]
        if problem := self._size_problem(index, vis_shape):
            return [("size_mismatch", rec.ann_path or rec.vis_path, problem)]
        return []

    def add_target(self, sample: dict[str, Any], index: int, target: Any) -> None:
        sample.update(boxes=target.boxes.copy(), labels=target.labels.copy(), ignore=target.ignore.copy())

    def record_meta(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        return {"ann_path": rec.ann_path, "image_id": rec.image_id}

    def default_transform(self, sample: dict[str, Any]) -> dict[str, Any]:
        return det_to_tensors(sample)

    def _size_problem(self, index: int, vis_shape: tuple[int, ...]) -> str | None:
        rec = self.records[index]
        if rec.size is not None and tuple(rec.size) != tuple(vis_shape[:2]):
            return (f"Annotation {rec.ann_path} gives image {rec.name!r} size {rec.size} (H, W) but {rec.vis_path} is "
                    f"{tuple(vis_shape[:2])}. Fix the annotation or the pairing.")
        return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = super().__getitem__(index)
        if not isinstance(out.get("boxes"), torch.Tensor):
            raise DataError(f"{self.name}: the transform must return a tensor 'boxes'; end the pipeline with a tensor "
                            "conversion (build_det_transforms does).")
        return out

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

    # ------------------------------------------------------------------ scan
    def scan_target(self, index: int, vis: np.ndarray | None, add: AddProblem) -> None:
        """Annotation errors and size mismatches as problems; boxes, ignore regions, empty images and clipped /
        dropped boxes counted for :meth:`scan_summary`."""
        rec = self.records[index]
        if vis is not None and (problem := self._size_problem(index, vis.shape)):
            add("size_mismatch", rec.ann_path or rec.vis_path, problem)
        try:
            ann = self.annotation(index)
        except DataError as exc:
            add("annotation", rec.ann_path or rec.name, str(exc))
            return
        t = self._scan_tally
        for label in ann.labels[~ann.ignore].tolist():
            t[("class", int(label))] += 1
        t["ignore_regions"] += int(ann.ignore.sum())
        t["empty_images"] += int(len(ann.labels) == 0)
        t["clipped_boxes"] += ann.clipped
        t["dropped_boxes"] += ann.dropped
        if ann.clipped or ann.dropped:
            self._scan_files.append((rec.ann_path or rec.name, ann.clipped, ann.dropped))

    def scan(self) -> ScanReport:
        self._scan_tally, self._scan_files = Counter(), []
        return super().scan()

    def scan_summary(self, report: ScanReport) -> None:
        t = self._scan_tally
        per_class = {n: int(t[("class", k)]) for k, n in enumerate(self.classes)}
        report.values.update(
            classes=self.classes, boxes_per_class=per_class, num_boxes=sum(per_class.values()),
            ignore_regions=int(t["ignore_regions"]), empty_images=int(t["empty_images"]),
            clipped_boxes=int(t["clipped_boxes"]), dropped_boxes=int(t["dropped_boxes"]),
            clipped_files=list(self._scan_files))
        shown = ", ".join(f"{k} {v}" for k, v in per_class.items()) or "none"
        report.counts += [
            f"Boxes: {sum(per_class.values())} ({shown}); ignore regions {t['ignore_regions']}; "
            f"images without boxes {t['empty_images']}.",
            f"Clipped to the image: {t['clipped_boxes']} box(es); dropped (zero area): {t['dropped_boxes']} box(es).",
        ]
        report.details += [(path, f"{c} clipped, {d} dropped") for path, c, d in self._scan_files]
        if t["clipped_boxes"] or t["dropped_boxes"]:
            report.repairs.append(f"{self.name}: {t['clipped_boxes']} box(es) clipped to the image, "
                                  f"{t['dropped_boxes']} zero-area box(es) dropped, in {len(self._scan_files)} "
                                  "file(s) (listed above)")
        report.add_no_targets(
            bool(sum(per_class.values())), self.target_folder(),
            f"not one box in the {report.num_ok} good image(s) of {self.name} ({t['ignore_regions']} ignore "
            "region(s)): a detector cannot learn or be scored on it. Check that the annotation files are found "
            "(names, folder, extension; see the files not used, if any) and that their classes are the dataset's.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, pairs={len(self)}, classes={self.classes})"
