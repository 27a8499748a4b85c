"""Readers of the KAIST benchmark files the community shares, and :func:`score_kaist` gluing them to the miss rate.

- :func:`read_kaist_annotations`: the KAIST test annotation json (COCO-style; the one MLPD and later papers use).
- :func:`read_kaist_txt`: the detection txt papers publish, one ``image_id,x,y,w,h,score`` line per box, image ids
  1-based in ground-truth order.
- :func:`read_coco_results`: a COCO results json list (``image_id``, ``bbox`` x, y, w, h, ``score``, optional
  ``category_id``).

Each image's condition comes from its KAIST set number: sets 00-02 and 06-08 are day, 03-05 and 09-11 night (the
test sets are 06-11); a name without ``setNN`` has no condition (it counts in "all" only). Ground-truth order is by
increasing image id. Predictions for images the ground truth does not have are returned (``unmatched``), never
silently dropped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from .kaist import DEFAULT_PROTOCOL, MissRateProtocol, log_average_miss_rate

KAIST_CATEGORIES = {1: "person", 2: "cyclist", 3: "people", 4: "person?"}
PERSON_ID = 1
OCCLUSION_LEVELS = (0, 1, 2)  # none, partial, heavy
# KAIST sets: 00-02 day, 03-05 night (train); 06-08 day, 09-11 night (test)
_SET_CONDITION = {**{s: "day" for s in (0, 1, 2, 6, 7, 8)}, **{s: "night" for s in (3, 4, 5, 9, 10, 11)}}
_SET_RE = re.compile(r"set(\d{2})")


def kaist_condition(name: str) -> str | None:
    """``"day"`` / ``"night"`` from the set number in an image name (``set06/V000/I00019`` -> day); None if none."""
    m = _SET_RE.search(name)
    return _SET_CONDITION.get(int(m.group(1))) if m else None


@dataclass
class KaistGroundTruth:
    """The KAIST annotation json, images in ground-truth order (by increasing image id).

    Attributes:
        path: the json file.
        image_ids: json image ids, increasing (the txt format's 1-based id k is ``image_ids[k - 1]``).
        names: ``im_name`` per image (``set06/V000/I00019``).
        conditions: ``"day"`` / ``"night"`` per image from its set number (None when the name has none).
        images: per image, the ground truth :func:`ivtune.metrics.kaist.log_average_miss_rate` takes: ``boxes``
            (N, 4) x1 y1 x2 y2, ``labels`` (category names), ``heights``, ``occlusion``, ``ignore``, ``image_size``
            (H, W; None when the json has no size).
        annotation_ids: per image, the json annotation id of each box.
    """

    path: Path
    image_ids: list[int]
    names: list[str]
    conditions: list[str | None]
    images: list[dict[str, Any]]
    annotation_ids: list[list[int]]
    _index: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {img_id: k for k, img_id in enumerate(self.image_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def index_of(self, image_id: int) -> int | None:
        """Position of a json image id in ground-truth order (None when unknown)."""
        return self._index.get(image_id)


@dataclass
class KaistPredictions:
    """Detections read from a file, one entry per ground-truth image.

    Attributes:
        path: the file.
        dets: per ground-truth image ``{"boxes": (M, 4) x1 y1 x2 y2, "scores": (M,)}``.
        num_read: boxes read.
        unmatched: ``(where, image_id)`` of each box whose image is not in the ground truth (``where``: "line 7" or
            "entry 3"); print them, they are not scored.
        num_other_category: boxes dropped because their ``category_id`` is not person (COCO results only).
    """

    path: Path
    dets: list[dict[str, np.ndarray]]
    num_read: int
    unmatched: list[tuple[str, Any]]
    num_other_category: int = 0


# ------------------------------------------------------------------------------------------------ helpers
def _load_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"Cannot parse {what} {path}: {exc}.") from exc


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _xywh(value: Any, where: str) -> list[float]:
    if not (isinstance(value, list) and len(value) == 4 and all(_number(v) for v in value)):
        raise DataError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {value!r}.")
    if value[2] < 0 or value[3] < 0:
        raise DataError(f"{where}: bbox {value!r} has a negative width or height; bbox is [x, y, w, h].")
    return [float(v) for v in value]


def _collect(n_images: int, per_image: list[list[tuple[list[float], float]]]) -> list[dict[str, np.ndarray]]:
    dets = []
    for k in range(n_images):
        rows = per_image[k]
        boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _ in rows], np.float64).reshape(-1, 4)
        dets.append({"boxes": boxes, "scores": np.array([s for _, s in rows], np.float64)})
    return dets


# ------------------------------------------------------------------------------------------------ ground truth
def read_kaist_annotations(path: str | Path) -> KaistGroundTruth:
    """Read the KAIST test annotation json (COCO-style).

    ``images``: ``id``, ``im_name`` (or ``file_name``) like ``set06/V000/I00019``, optional ``height`` / ``width``;
    ``annotations``: ``id``, ``image_id``, ``bbox`` [x, y, w, h], ``category_id`` (1 person, 2 cyclist, 3 people,
    4 person?), optional ``height`` (default bbox h), ``occlusion`` (0 none, 1 partial, 2 heavy; default 0),
    ``ignore`` (0 / 1; default 0). Ids may start at 0 or 1. Every value is checked; errors name the json and the
    image or annotation id.
    """
    path = Path(path)
    data = _load_json(path, "KAIST annotation json")
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise DataError(f"{path}: not a KAIST annotation json (needs 'images' and 'annotations' lists).")
    images: dict[int, dict[str, Any]] = {}
    for k, img in enumerate(data["images"]):
        if not isinstance(img, Mapping) or not _is_int(img.get("id")):
            raise DataError(f"{path}: images[{k}] needs an integer 'id', got {img!r:.120}.")
        img_id = img["id"]
        if img_id in images:
            raise DataError(f"{path}: duplicate image id {img_id} (images[{k}]); image ids must be unique.")
        name = img.get("im_name", img.get("file_name"))
        if not isinstance(name, str) or not name:
            raise DataError(f"{path}: image id {img_id} needs an 'im_name' like 'set06/V000/I00019'.")
        size = None
        if img.get("height") is not None or img.get("width") is not None:
            h, w = img.get("height"), img.get("width")
            if not (_number(h) and _number(w) and h > 0 and w > 0):
                raise DataError(f"{path}: image id {img_id} has height {h!r} and width {w!r}; expected positive "
                                "numbers (or neither).")
            size = (float(h), float(w))
        images[img_id] = {"name": name, "size": size, "rows": []}
    seen: set[int] = set()
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, Mapping) or not _is_int(ann.get("id")):
            raise DataError(f"{path}: annotations[{k}] needs an integer 'id', got {ann!r:.120}.")
        ann_id = ann["id"]
        where = f"{path}: annotation id {ann_id}"
        if ann_id in seen:
            raise DataError(f"{path}: duplicate annotation id {ann_id} (annotations[{k}]); ids must be unique.")
        seen.add(ann_id)
        img_id = ann.get("image_id")
        if not _is_int(img_id) or img_id not in images:
            raise DataError(f"{where} has image_id {img_id!r}, which is not an image of this json.")
        x, y, w, h = _xywh(ann.get("bbox"), where)
        cat = ann.get("category_id")
        if not _is_int(cat) or cat not in KAIST_CATEGORIES:
            raise DataError(f"{where} has category_id {cat!r}; KAIST ids are "
                            + ", ".join(f"{i} {n}" for i, n in KAIST_CATEGORIES.items()) + ".")
        height = ann.get("height", h)
        if not (_number(height) and height >= 0):
            raise DataError(f"{where} has height {height!r}; expected a finite number >= 0.")
        occ = ann.get("occlusion", 0)
        if not _is_int(occ) or occ not in OCCLUSION_LEVELS:
            raise DataError(f"{where} has occlusion {occ!r}; expected 0 (none), 1 (partial) or 2 (heavy).")
        ign = ann.get("ignore", 0)
        if ign not in (0, 1) or not isinstance(ign, (int, bool)):
            raise DataError(f"{where} has ignore {ign!r}; expected 0 or 1.")
        images[img_id]["rows"].append((ann_id, [x, y, x + w, y + h], KAIST_CATEGORIES[cat], float(height), occ,
                                       bool(ign)))
    order = sorted(images)
    gt_images, ann_ids = [], []
    for img_id in order:
        rows = images[img_id]["rows"]
        gt_images.append({
            "boxes": np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
            "labels": [r[2] for r in rows],
            "heights": np.array([r[3] for r in rows], np.float64),
            "occlusion": np.array([r[4] for r in rows], np.int64),
            "ignore": np.array([r[5] for r in rows], bool),
            "image_size": images[img_id]["size"],
        })
        ann_ids.append([r[0] for r in rows])
    names = [images[i]["name"] for i in order]
    return KaistGroundTruth(path, order, names, [kaist_condition(n) for n in names], gt_images, ann_ids)


# ------------------------------------------------------------------------------------------------ predictions
def read_kaist_txt(path: str | Path, gt: KaistGroundTruth) -> KaistPredictions:
    """Read a KAIST detection txt: ``image_id,x,y,w,h,score`` per line (commas and / or spaces), image id k
    (1-based) being the k-th image of ``gt``. Blank lines are skipped; a malformed line raises
    :class:`~ivtune.errors.DataError` naming the file and the line (1-based); an id outside 1..len(gt) is reported
    in ``unmatched``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"Cannot read KAIST detection txt {path}: {exc.strerror or exc}.") from exc
    per_image: list[list[tuple[list[float], float]]] = [[] for _ in range(len(gt))]
    unmatched: list[tuple[str, Any]] = []
    num_read = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = [t for t in re.split(r"[,\s]+", line.strip()) if t]
        if not tokens:
            continue
        where = f"{path} line {lineno}"
        if len(tokens) != 6:
            raise DataError(f"{where}: expected 6 values 'image_id,x,y,w,h,score', got {len(tokens)}: "
                            f"{line.strip()!r}.")
        try:
            img = int(tokens[0])
            vals = [float(t) for t in tokens[1:]]
        except ValueError as exc:
            raise DataError(f"{where}: expected an integer image id and 5 numbers 'image_id,x,y,w,h,score', got "
                            f"{line.strip()!r}.") from exc
        if not all(math.isfinite(v) for v in vals):
            raise DataError(f"{where}: non-finite value in {line.strip()!r}.")
        if vals[2] < 0 or vals[3] < 0:
            raise DataError(f"{where}: negative width or height in {line.strip()!r}; the columns are x, y, w, h.")
        num_read += 1
        if not 1 <= img <= len(gt):
            unmatched.append((f"line {lineno}", img))
            continue
        per_image[img - 1].append((vals[:4], vals[4]))
    return KaistPredictions(path, _collect(len(gt), per_image), num_read, unmatched)


def read_coco_results(path: str | Path, gt: KaistGroundTruth) -> KaistPredictions:
    """Read a COCO results json list: ``image_id`` (the annotation json's id), ``bbox`` [x, y, w, h], ``score``,
    optional ``category_id`` (when given only person, id 1, is kept; the others are counted in
    ``num_other_category``). Ids not in ``gt`` are reported in ``unmatched``.
    """
    path = Path(path)
    data = _load_json(path, "COCO results json")
    if not isinstance(data, list):
        raise DataError(f"{path}: a COCO results file is a json list of {{image_id, bbox, score}}, got "
                        f"{type(data).__name__}.")
    per_image: list[list[tuple[list[float], float]]] = [[] for _ in range(len(gt))]
    unmatched: list[tuple[str, Any]] = []
    other = 0
    for k, det in enumerate(data):
        where = f"{path}: entry {k}"
        if not isinstance(det, Mapping):
            raise DataError(f"{where} is {type(det).__name__}; expected {{image_id, bbox, score}}.")
        img_id = det.get("image_id")
        if not _is_int(img_id):
            raise DataError(f"{where} has image_id {img_id!r}; expected an integer.")
        box = _xywh(det.get("bbox"), where)
        score = det.get("score")
        if not _number(score):
            raise DataError(f"{where} has score {score!r}; expected a finite number.")
        if "category_id" in det:
            if not _is_int(det["category_id"]):
                raise DataError(f"{where} has category_id {det['category_id']!r}; expected an integer.")
            if det["category_id"] != PERSON_ID:
                other += 1
                continue
        idx = gt.index_of(img_id)
        if idx is None:
            unmatched.append((f"entry {k}", img_id))
            continue
        per_image[idx].append((box, float(score)))
    return KaistPredictions(path, _collect(len(gt), per_image), len(data), unmatched, other)


def score_kaist(gt_path: str | Path, pred_path: str | Path, protocol: str | MissRateProtocol = DEFAULT_PROTOCOL,
                fppi_decimals: int | None = None) -> dict[str, Any]:
    """MR^-2 of a prediction file against the KAIST annotation json, overall, day and night.

    Args:
        gt_path: the KAIST annotation json (:func:`read_kaist_annotations`).
        pred_path: a ``.txt`` (:func:`read_kaist_txt`) or ``.json`` COCO results file (:func:`read_coco_results`).
        protocol: a registered name or a :class:`~ivtune.metrics.kaist.MissRateProtocol`.
        fppi_decimals: see :func:`~ivtune.metrics.kaist.log_average_miss_rate`.

    Returns:
        :func:`~ivtune.metrics.kaist.log_average_miss_rate`'s dict with ``miss_rate`` ``{"all", "day", "night"}`` in
        percent (None for a condition without targets), plus ``num_predictions`` (boxes read),
        ``num_unmatched_predictions`` and ``unmatched_image_ids`` (sorted; not scored: print them),
        ``num_other_category``, ``gt_path`` and ``pred_path``.
    """
    gt = read_kaist_annotations(gt_path)
    if len(gt) == 0:
        raise DataError(f"{gt.path}: has no images; give the KAIST test annotation json.")
    pred_path = Path(pred_path)
    suffix = pred_path.suffix.lower()
    if suffix == ".txt":
        preds = read_kaist_txt(pred_path, gt)
    elif suffix == ".json":
        preds = read_coco_results(pred_path, gt)
    else:
        raise DataError(f"{pred_path}: unknown prediction format {suffix!r}; give a KAIST .txt "
                        "(image_id,x,y,w,h,score) or a COCO results .json.")
    out = log_average_miss_rate(gt.images, preds.dets, protocol, gt.conditions, fppi_decimals)
    for cond in ("day", "night"):
        out["miss_rate"].setdefault(cond, None)
    out.update({
        "num_predictions": preds.num_read,
        "num_unmatched_predictions": len(preds.unmatched),
        "unmatched_image_ids": sorted({img for _, img in preds.unmatched}),
        "num_other_category": preds.num_other_category,
        "gt_path": str(gt.path),
        "pred_path": str(preds.path),
    })
    return out


__all__ = ["KAIST_CATEGORIES", "KaistGroundTruth", "KaistPredictions", "kaist_condition", "read_coco_results",
           "read_kaist_annotations", "read_kaist_txt", "score_kaist"]
