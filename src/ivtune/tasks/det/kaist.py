"""Log-average miss rate (MR^-2) under named evaluation protocols: KAIST's (the default) and Caltech's.

Dollár, Wojek, Schiele, Perona, "Pedestrian Detection: An Evaluation of the State of the Art", TPAMI 2012 (the
procedure, its Matlab toolbox); Hwang, Park, Kim, Choi, Kweon, "Multispectral Pedestrian Detection: Benchmark
Dataset and Baseline", CVPR 2015 (the KAIST benchmark and its settings).

The procedure, common to every protocol (a :class:`MissRateProtocol` holds the numbers):

1. **Ground truth -> targets and ignore regions.** A box is an *ignore region* when any of these holds, else it is a
   *target*: its ``ignore`` flag is set; its label is not an evaluated label (KAIST: ``people``, ``cyclist`` and
   ``person?`` are ignore regions; the toolbox's ``ilbls``); its height is below ``min_height`` (``hRng``); its
   occlusion level is above ``max_occlusion`` (0 none, 1 partial, 2 heavy; the toolbox's ``vRng``); it is not
   fully inside the ``border`` box (``xRng`` / ``yRng``: ``x1 < bx0`` or ``x2 > bx1`` or ``y1 < by0`` or
   ``y2 > by1``; touching the border line is inside). Boxes are never squarified (Caltech's toolbox resizes boxes
   to aspect 0.41; KAIST does not).
2. **Detection filter** (Caltech only): detections shorter than ``min_height * det_min_height_ratio`` are removed
   before matching, so that detections of just-too-small people are not false positives.
3. **Matching, per image.** Detections by decreasing score (stable: equal scores keep input order). Each one
   matches the still-unmatched target with the highest IoU, if that IoU is >= ``iou`` (0.5; exact ties go to the
   target given first), and the target is taken. Failing that, it is *discarded* (neither true nor false positive)
   when some ignore region covers it: ``intersection / detection area >= ignore_overlap`` (0.5). Targets are
   preferred to ignore regions; an ignore region absorbs any number of detections. Anything else is a false
   positive. Every target of every image counts, detected or not (an image with targets and no detections adds
   its misses).
4. **Curve.** The kept detections of all images, by decreasing score (stable: image order, then the per-image
   order), give one point per detection: FPPI = false positives / number of images, miss rate = 1 - true
   positives / number of targets; the curve starts at (0, 1).
5. **Sampling and average.** At each of the 9 reference FPPI ``np.logspace(-2, 0, 9)`` (exact values, as Dollár's
   toolbox) the miss rate is that of the last curve point with FPPI <= the reference (within 1e-12); when no
   detection point lies at or below it, the miss rate is 1 (the curve's start). MR^-2 is the geometric mean of the
   9 values, each floored at 1e-10, in percent.

The community's KAIST Python script (MLPD's ``evaluation_script.py``) rounds the reference points to 4 decimals
(10^-1.5 -> 0.0316, 10^-0.25 -> 0.5623); ``fppi_decimals=4`` reproduces that for comparison. It also has bugs this
module does not reproduce: images with targets but no detections drop out of the target count; a reference point
with no curve point at or below it reads the final recall instead of a miss rate of 1; detections are matched in
file order rather than by score; a match to the annotation with id 0 counts as a false positive.

The protocols (``PROTOCOLS``; :meth:`MissRateProtocol.describe` prints one's rules):

- ``kaist-reasonable`` (default): label ``person``; height >= 55 px; occlusion <= 1 (none or partial); fully
  inside [5, 5, 635, 507] (640x512 frames; 5 px margins for other sizes); no detection filter.
- ``kaist-all``: label ``person``; height >= 20 px; any occlusion; the same border rule; no detection filter.
- ``caltech-reasonable`` (ivtune's earlier default): label ``person``; height >= 50 px; occlusion <= 1; no border
  rule; detections shorter than 50 / 1.25 = 40 px removed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError

GT_KEYS = ("boxes", "labels", "heights", "occlusion", "ignore", "image_size")
DET_KEYS = ("boxes", "scores")
_FPPI_TOL = 1e-12  # fp / n_img == 10^k hits the sample whatever way the power was rounded


@dataclass(frozen=True)
class MissRateProtocol:
    """Which ground truth is a target, which detections are kept, and the FPPI sampling (module docstring).

    Attributes:
        name: registry name.
        labels: evaluated label names; any other label is an ignore region.
        label_ids: evaluated label ids, for ground truth that gives integer labels (KAIST json: 1 = person).
        min_height: targets shorter than this (pixels) are ignore regions.
        max_occlusion: targets with a higher occlusion level (0 none, 1 partial, 2 heavy) are ignore regions;
            None: no occlusion rule.
        border: ``(x0, y0, x1, y1)`` for a ``frame_size`` image; a target not fully inside is an ignore region.
            For another image size the margins are kept: ``(x0, y0, W - (frame_w - x1), H - (frame_h - y1))``.
            None: no border rule.
        frame_size: ``(width, height)`` the border is given for, and assumed when an image gives no size.
        det_min_height_ratio: detections shorter than ``min_height * det_min_height_ratio`` are removed before
            matching (Caltech: 1 / 1.25); None: every detection is kept.
        iou: IoU a detection needs to match a target.
        ignore_overlap: ``intersection / detection area`` a detection needs to be absorbed by an ignore region.
        fppi_range: lowest and highest reference FPPI.
        num_fppi: number of reference FPPI, log-spaced over ``fppi_range``.
    """

    name: str
    labels: tuple[str, ...] = ("person",)
    label_ids: tuple[int, ...] = (1,)
    min_height: float = 55.0
    max_occlusion: int | None = 1
    border: tuple[float, float, float, float] | None = (5.0, 5.0, 635.0, 507.0)
    frame_size: tuple[int, int] = (640, 512)
    det_min_height_ratio: float | None = None
    iou: float = 0.5
    ignore_overlap: float = 0.5
    fppi_range: tuple[float, float] = (1e-2, 1e0)
    num_fppi: int = 9

    def __post_init__(self) -> None:
        where = f"MissRateProtocol {self.name!r}"
        if not self.labels and not self.label_ids:
            raise ConfigError(f"{where}: labels and label_ids are both empty; nothing would be evaluated.")
        if not (math.isfinite(self.min_height) and self.min_height >= 0):
            raise ConfigError(f"{where}: min_height must be a finite number >= 0, got {self.min_height}.")
        if self.max_occlusion is not None and self.max_occlusion < 0:
            raise ConfigError(f"{where}: max_occlusion must be >= 0 or None, got {self.max_occlusion}.")
        if self.border is not None:
            x0, y0, x1, y1 = self.border
            if not all(math.isfinite(v) for v in self.border) or x1 <= x0 or y1 <= y0:
                raise ConfigError(f"{where}: border must be finite (x0, y0, x1, y1) with x0 < x1, y0 < y1, "
                                  f"got {self.border}.")
        if self.det_min_height_ratio is not None and not (0 < self.det_min_height_ratio <= 1):
            raise ConfigError(f"{where}: det_min_height_ratio must be in (0, 1] or None, "
                              f"got {self.det_min_height_ratio}.")
        for key in ("iou", "ignore_overlap"):
            if not 0 < getattr(self, key) <= 1:
                raise ConfigError(f"{where}: {key} must be in (0, 1], got {getattr(self, key)}.")
        lo, hi = self.fppi_range
        if not (0 < lo <= hi and math.isfinite(hi)) or self.num_fppi < 1:
            raise ConfigError(f"{where}: fppi_range must be 0 < low <= high and num_fppi >= 1, got "
                              f"{self.fppi_range} and {self.num_fppi}.")

    def fppi_points(self, decimals: int | None = None) -> np.ndarray:
        """The reference FPPI: exact ``np.logspace``, or rounded to ``decimals`` (MLPD's script: 4)."""
        lo, hi = self.fppi_range
        pts = np.logspace(math.log10(lo), math.log10(hi), self.num_fppi)
        return pts if decimals is None else np.round(pts, decimals)

    def border_for(self, image_size: tuple[float, float] | None) -> tuple[float, float, float, float] | None:
        """The border box for an image of ``(height, width)`` (None: ``frame_size``), same margins."""
        if self.border is None:
            return None
        x0, y0, x1, y1 = self.border
        if image_size is None:
            return self.border
        h, w = image_size
        fw, fh = self.frame_size
        return (x0, y0, w - (fw - x1), h - (fh - y1))

    def describe(self) -> str:
        """The rules as Markdown bullets (what docs/METHOD.md lists for this protocol)."""
        names = ", ".join(self.labels) if self.labels else "-"
        ids = ", ".join(str(i) for i in self.label_ids) if self.label_ids else "-"
        occ = ("any occlusion" if self.max_occlusion is None
               else f"occlusion <= {self.max_occlusion} (0 none, 1 partial, 2 heavy)")
        if self.border is None:
            border = "no border rule"
        else:
            x0, y0, x1, y1 = (f"{v:g}" for v in self.border)
            fw, fh = self.frame_size
            border = (f"fully inside [{x0}, {y0}, {x1}, {y1}] for {fw}x{fh} frames (same margins for other sizes; "
                      "touching the line is inside)")
        if self.det_min_height_ratio is None:
            det = "every detection kept"
        else:
            det = (f"detections shorter than {self.min_height:g} x {self.det_min_height_ratio:g} = "
                   f"{self.min_height * self.det_min_height_ratio:g} px removed before matching")
        lo, hi = self.fppi_range
        return "\n".join([
            f"- `{self.name}`",
            f"  - targets: label {names} (ids {ids}); height >= {self.min_height:g} px; {occ}; {border}; "
            "ignore flag not set",
            "  - ignore regions: every other ground-truth box (other labels included)",
            f"  - detections: {det}",
            f"  - match: IoU >= {self.iou:g} to a target, else intersection / detection area >= "
            f"{self.ignore_overlap:g} to an ignore region (discarded)",
            f"  - MR: geometric mean of the miss rate at {self.num_fppi} FPPI log-spaced in [{lo:g}, {hi:g}]",
        ])


PROTOCOLS: dict[str, MissRateProtocol] = {
    p.name: p for p in (
        MissRateProtocol("kaist-reasonable"),
        MissRateProtocol("kaist-all", min_height=20.0, max_occlusion=None),
        MissRateProtocol("caltech-reasonable", min_height=50.0, border=None, det_min_height_ratio=1 / 1.25),
    )
}
DEFAULT_PROTOCOL = "kaist-reasonable"


def get_protocol(name: str | MissRateProtocol) -> MissRateProtocol:
    """The registered protocol ``name`` (a :class:`MissRateProtocol` is returned as is)."""
    if isinstance(name, MissRateProtocol):
        return name
    if name not in PROTOCOLS:
        raise ConfigError(f"Unknown miss-rate protocol {name!r}. Valid: {', '.join(PROTOCOLS)}. Or pass a "
                          "MissRateProtocol (dataclasses.replace(PROTOCOLS['kaist-reasonable'], ...)).")
    return PROTOCOLS[name]


# ------------------------------------------------------------------------------------------------ input checks
def _boxes(value: Any, where: str) -> np.ndarray:
    if value is None:
        raise DataError(f"{where}: 'boxes' is missing; give an (N, 4) array of x1, y1, x2, y2 (empty: zeros((0, 4))).")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: boxes must be numbers in an (N, 4) array of x1, y1, x2, y2 ({exc}).") from exc
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"{where}: boxes must have shape (N, 4) (x1, y1, x2, y2), got {arr.shape}.")
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if len(bad):
        raise DataError(f"{where}: box {bad[0]} has non-finite coordinates {arr[bad[0]].tolist()}.")
    bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if len(bad):
        raise DataError(f"{where}: box {bad[0]} {arr[bad[0]].tolist()} has x2 < x1 or y2 < y1; boxes are x1, y1, x2, "
                        "y2 (from x, y, w, h: x2 = x + w, y2 = y + h).")
    return arr


def _per_box(value: Any, n: int, key: str, where: str, kind: str) -> np.ndarray:
    """A ``(n,)`` array of finite numbers (``kind`` "number", "level" = integer >= 0, "flag" = 0/1/bool)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {key!r} must be {n} numbers, one per box ({exc}).") from exc
    if arr.size == 0 and n == 0:
        return np.zeros(0)
    if arr.shape != (n,):
        raise DataError(f"{where}: {key!r} must have shape ({n},), one per box, got {arr.shape}.")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if len(bad):
        raise DataError(f"{where}: {key}[{bad[0]}] = {arr[bad[0]]}; expected a finite number >= 0.")
    if kind == "level":
        bad = np.flatnonzero(arr != np.round(arr))
        if len(bad):
            raise DataError(f"{where}: {key}[{bad[0]}] = {arr[bad[0]]}; expected an integer level (0 none, "
                            "1 partial, 2 heavy).")
    if kind == "flag":
        bad = np.flatnonzero((arr != 0) & (arr != 1))
        if len(bad):
            raise DataError(f"{where}: {key}[{bad[0]}] = {arr[bad[0]]}; expected 0 / 1 or a bool.")
    return arr


def _evaluated(labels: Any, n: int, protocol: MissRateProtocol, where: str) -> np.ndarray:
    """``(n,)`` bool: the box's label is one the protocol evaluates."""
    seq = list(labels) if not isinstance(labels, (str, bytes)) else None
    if seq is None or len(seq) != n:
        got = "a string" if seq is None else f"{len(seq)}"
        raise DataError(f"{where}: 'labels' must give one label per box ({n}), got {got}.")
    out = np.zeros(n, bool)
    for k, lab in enumerate(seq):
        if isinstance(lab, np.generic):
            lab = lab.item()
        if isinstance(lab, str):
            out[k] = lab in protocol.labels
        elif isinstance(lab, int) and not isinstance(lab, bool):
            out[k] = lab in protocol.label_ids
        else:
            raise DataError(f"{where}: labels[{k}] = {lab!r}; expected a label name (str) or id (int).")
    return out


def _image_size(value: Any, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        h, w = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: 'image_size' must be (height, width), got {value!r}.") from exc
    if not (math.isfinite(h) and math.isfinite(w) and h > 0 and w > 0):
        raise DataError(f"{where}: 'image_size' must be positive finite (height, width), got {value!r}.")
    return h, w


def _check_keys(entry: Any, allowed: tuple[str, ...], where: str, hint: str = "") -> None:
    if not isinstance(entry, Mapping):
        raise DataError(f"{where}: expected a mapping with keys {list(allowed)}, got {type(entry).__name__}.")
    unknown = sorted(str(k) for k in entry if k not in allowed)
    if unknown:
        raise DataError(f"{where}: unknown keys {unknown}; accepted: {list(allowed)}.{hint}")


def apply_protocol(gt: Mapping[str, Any], protocol: str | MissRateProtocol = DEFAULT_PROTOCOL,
                   where: str = "gt") -> tuple[np.ndarray, np.ndarray]:
    """One image's ground truth -> ``(boxes (N, 4) xyxy, ignore (N,) bool)`` under ``protocol`` (rule 1).

    Args:
        gt: ``{"boxes": (N, 4) x1 y1 x2 y2, "labels" (optional, default: every box evaluated): names or ids,
            "heights" (optional, default y2 - y1), "occlusion" (optional, default 0), "ignore" (optional, default
            False), "image_size" (optional, default the protocol's frame): (height, width)}``.
        protocol: a registered name or a :class:`MissRateProtocol`.
        where: how errors name this image.
    """
    proto = get_protocol(protocol)
    _check_keys(gt, GT_KEYS, where)
    boxes = _boxes(gt.get("boxes"), where)
    n = len(boxes)
    ignore = np.zeros(n, bool)
    if gt.get("ignore") is not None:
        ignore |= _per_box(gt["ignore"], n, "ignore", where, "flag").astype(bool)
    if gt.get("labels") is not None:
        ignore |= ~_evaluated(gt["labels"], n, proto, where)
    heights = boxes[:, 3] - boxes[:, 1]
    if gt.get("heights") is not None:
        heights = _per_box(gt["heights"], n, "heights", where, "number")
    ignore |= heights < proto.min_height
    if gt.get("occlusion") is not None:
        occ = _per_box(gt["occlusion"], n, "occlusion", where, "level")
        if proto.max_occlusion is not None:
            ignore |= occ > proto.max_occlusion
    border = proto.border_for(_image_size(gt.get("image_size"), where))
    if border is not None:
        bx0, by0, bx1, by1 = border
        ignore |= (boxes[:, 0] < bx0) | (boxes[:, 1] < by0) | (boxes[:, 2] > bx1) | (boxes[:, 3] > by1)
    return boxes, ignore


def _detections(det: Any, protocol: MissRateProtocol, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(boxes, scores, number removed by the height filter)``."""
    _check_keys(det, DET_KEYS, where, " Keep only the evaluated class's detections and pass boxes + scores.")
    boxes = _boxes(det.get("boxes"), where)
    if det.get("scores") is None:
        raise DataError(f"{where}: 'scores' is missing; give one score per box.")
    try:
        scores = np.asarray(det["scores"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: scores must be {len(boxes)} numbers ({exc}).") from exc
    scores = scores.reshape(0) if scores.size == 0 and len(boxes) == 0 else scores
    if scores.shape != (len(boxes),):
        raise DataError(f"{where}: {len(boxes)} boxes need {len(boxes)} scores, got shape {scores.shape}.")
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        raise DataError(f"{where}: scores[{bad[0]}] = {scores[bad[0]]}; scores must be finite.")
    if protocol.det_min_height_ratio is None:
        return boxes, scores, 0
    keep = (boxes[:, 3] - boxes[:, 1]) >= protocol.min_height * protocol.det_min_height_ratio
    return boxes[keep], scores[keep], int((~keep).sum())


# ------------------------------------------------------------------------------------------------ matching
def _overlaps(dets: np.ndarray, gts: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """``(D, G)``: IoU with targets, intersection / detection area with ignore regions (0 where undefined)."""
    if len(dets) == 0 or len(gts) == 0:
        return np.zeros((len(dets), len(gts)))
    iw = np.minimum(dets[:, None, 2], gts[None, :, 2]) - np.maximum(dets[:, None, 0], gts[None, :, 0])
    ih = np.minimum(dets[:, None, 3], gts[None, :, 3]) - np.maximum(dets[:, None, 1], gts[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_d = ((dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]))[:, None]
    area_g = ((gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]))[None, :]
    denom = np.where(ignore[None, :], area_d, area_d + area_g - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, inter / np.where(denom > 0, denom, 1.0), 0.0)


def match_detections(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, gt_ignore: np.ndarray,
                     iou: float = 0.5, ignore_overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections (rule 3 of the module docstring); inputs already checked.

    Returns:
        ``(scores, outcome)`` by decreasing score (stable); outcome 1 = true positive, 0 = false positive,
        -1 = absorbed by an ignore region (discarded).
    """
    order = np.argsort(-det_scores, kind="stable")
    dets, scores = det_boxes[order], det_scores[order]
    ov = _overlaps(dets, gt_boxes, gt_ignore)
    free = ~gt_ignore.copy()  # unmatched targets
    covered = (ov[:, gt_ignore] >= ignore_overlap).any(axis=1) if gt_ignore.any() else np.zeros(len(dets), bool)
    outcome = np.zeros(len(dets), np.int64)
    for d in range(len(dets)):
        cand = np.where(free, ov[d], -1.0)
        g = int(np.argmax(cand)) if len(cand) else -1
        if g >= 0 and cand[g] >= iou:
            free[g] = False
            outcome[d] = 1
        elif covered[d]:
            outcome[d] = -1
    return scores, outcome


# ------------------------------------------------------------------------------------------------ the miss rate
@dataclass
class _Matched:
    """One image after matching: kept detections (score order) and counts."""

    scores: np.ndarray
    tp: np.ndarray
    num_targets: int
    num_ignored: int
    num_dropped: int = field(default=0)


def _summarise(images: Sequence[_Matched], refs: np.ndarray) -> dict[str, Any]:
    n_img = len(images)
    n_pos = sum(m.num_targets for m in images)
    scores = np.concatenate([m.scores for m in images]) if images else np.zeros(0)
    tp = np.concatenate([m.tp for m in images]) if images else np.zeros(0, bool)
    tp = tp[np.argsort(-scores, kind="stable")]
    fppi = np.concatenate([[0.0], np.cumsum(~tp) / max(n_img, 1)])
    out: dict[str, Any] = {"num_images": n_img, "num_targets": n_pos, "num_detections": int(len(tp)),
                           "num_ignored_detections": sum(m.num_ignored for m in images),
                           "num_dropped_detections": sum(m.num_dropped for m in images), "fppi": fppi}
    if n_pos == 0:
        out.update({"mr2": None, "miss_rate_at": {float(r): None for r in refs},
                    "miss_curve": np.full(len(fppi), np.nan)})
        return out
    miss = np.concatenate([[1.0], 1.0 - np.cumsum(tp) / n_pos])
    # last point with fppi <= ref; fppi[0] = 0 so a reference below every detection point reads miss 1
    idx = np.searchsorted(fppi, refs + _FPPI_TOL, side="right") - 1
    at = miss[idx]
    mr2 = float(np.exp(np.mean(np.log(np.maximum(at, 1e-10))))) * 100.0
    out.update({"mr2": mr2, "miss_rate_at": {float(r): float(m) * 100.0 for r, m in zip(refs, at, strict=True)},
                "miss_curve": miss})
    return out


def log_average_miss_rate(
    gt_per_image: Sequence[Mapping[str, Any]],
    dets_per_image: Sequence[Mapping[str, Any]],
    protocol: str | MissRateProtocol = DEFAULT_PROTOCOL,
    conditions: Sequence[str | None] | None = None,
    fppi_decimals: int | None = None,
) -> dict[str, Any]:
    """MR^-2 (percent) of detections against ground truth under a protocol (module docstring).

    Args:
        gt_per_image: per image ``{"boxes": (N, 4) x1 y1 x2 y2, "labels", "heights", "occlusion", "ignore",
            "image_size": (H, W)}``; all but boxes optional (:func:`apply_protocol`).
        dets_per_image: per image ``{"boxes": (M, 4) x1 y1 x2 y2, "scores": (M,)}``, same order and length.
        protocol: a name in ``PROTOCOLS`` or a :class:`MissRateProtocol`.
        conditions: optional per-image condition (e.g. ``"day"`` / ``"night"``, None: only in "all"); each
            condition is evaluated on its own images (FPPI over that subset's image count).
        fppi_decimals: round the reference FPPI (4 reproduces MLPD's script); None: exact (Dollár).

    Returns:
        ``protocol`` (name), ``mr2`` (None without targets), ``miss_rate``: ``{"all": mr2, condition: MR}``,
        ``miss_rate_at``: ``{reference fppi: miss rate}``, ``num_images``, ``num_targets``, ``num_detections`` (true
        plus false positives), ``num_ignored_detections`` (absorbed by ignore regions), ``num_dropped_detections``
        (removed by the height filter), ``fppi`` and ``miss_curve`` (the curve, from (0, 1); miss rate 0..1),
        ``by_condition``: ``{condition: {mr2, miss_rate_at, num_images, num_targets, num_detections}}``. Percent
        everywhere but the curve.

    Raises:
        ConfigError: unknown protocol, mismatched list lengths, no images.
        DataError: a malformed image entry (the message names its index and what was expected).
    """
    proto = get_protocol(protocol)
    n = len(gt_per_image)
    if n == 0:
        raise ConfigError("gt_per_image is empty; the miss rate needs at least one image.")
    if len(dets_per_image) != n:
        raise ConfigError(f"gt_per_image has {n} images but dets_per_image has {len(dets_per_image)}; give one "
                          "detection entry per image, in the same order ({'boxes': zeros((0, 4)), 'scores': []} "
                          "for none).")
    if conditions is not None:
        if len(conditions) != n:
            raise ConfigError(f"conditions has {len(conditions)} entries for {n} images; give one per image "
                              "(None for no condition).")
        for i, c in enumerate(conditions):
            if c is not None and not (isinstance(c, str) and c and c != "all"):
                raise ConfigError(f"conditions[{i}] = {c!r}; expected a non-empty name other than 'all', or None.")
    if fppi_decimals is not None and (isinstance(fppi_decimals, bool) or not isinstance(fppi_decimals, int)):
        raise ConfigError(f"fppi_decimals must be an int or None, got {fppi_decimals!r}.")
    refs = proto.fppi_points(fppi_decimals)
    matched = []
    for i, (gt, det) in enumerate(zip(gt_per_image, dets_per_image, strict=True)):
        gb, gi = apply_protocol(gt, proto, f"gt_per_image[{i}]")
        db, ds, dropped = _detections(det, proto, f"dets_per_image[{i}]")
        scores, outcome = match_detections(db, ds, gb, gi, proto.iou, proto.ignore_overlap)
        kept = outcome >= 0
        matched.append(_Matched(scores[kept], outcome[kept] == 1, int((~gi).sum()), int((~kept).sum()), dropped))
    out = {"protocol": proto.name, **_summarise(matched, refs)}
    out["miss_rate"] = {"all": out["mr2"]}
    out["by_condition"] = {}
    if conditions is not None:
        for cond in dict.fromkeys(c for c in conditions if c is not None):
            sub = _summarise([m for m, c in zip(matched, conditions, strict=True) if c == cond], refs)
            out["miss_rate"][cond] = sub["mr2"]
            out["by_condition"][cond] = {k: sub[k] for k in ("mr2", "miss_rate_at", "num_images", "num_targets",
                                                             "num_detections")}
    return out


__all__ = ["DEFAULT_PROTOCOL", "PROTOCOLS", "MissRateProtocol", "apply_protocol", "get_protocol",
           "log_average_miss_rate", "match_detections"]
