"""Detection metrics: COCO AP through pycocotools, the KAIST log-average miss rate, the report and PR curves.

- :func:`coco_evaluate`: mAP (AP@[.5:.95]), AP50, AP75, AP small / medium / large, AR, per-class AP and AP50, all in
  percent, plus pycocotools' precision array for PR curves.
- :func:`kaist_miss_rate`: MR^-2 of Dollar et al. (Caltech pedestrians; the KAIST benchmark): miss rate averaged in
  log space at 9 FPPI points log-spaced in [1e-2, 1e0]. Matching per image, detections by decreasing score: a
  detection matches the unmatched target with the highest IoU >= 0.5; failing that, an ignore region whose overlap
  ``intersection / detection area`` is >= 0.5, and is then discarded (neither true nor false positive). Targets are
  preferred to ignore regions; an ignore region can absorb any number of detections.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError

KAIST_SETTINGS = ("reasonable", "all")
FPPI_POINTS = np.logspace(-2.0, 0.0, 9)
_STAT_KEYS = ("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
              "AR_medium", "AR_large")


def _pct(v: float) -> float | None:
    return None if v is None or v < 0 or math.isnan(v) else float(v) * 100.0


def coco_evaluate(gt_coco: dict[str, Any], detections: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Evaluate detections against COCO ground truth with pycocotools' ``COCOeval`` (bbox).

    Args:
        gt_coco: COCO ground-truth dict (e.g. :meth:`ivtune.data.det.PairedDetDataset.to_coco`); ``iscrowd`` boxes
            are ignore regions.
        detections: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` dicts (COCO results format).

    Returns:
        ``mAP``, ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large``, ``AR1``, ``AR10``, ``AR100``,
        ``AR_small/medium/large`` in percent (None where no ground truth exists in that range);
        ``per_class_AP`` / ``per_class_AP50``: category name -> percent (None without ground truth);
        ``precision``: ``(T, R, K)`` array (IoU thresholds x 101 recall points x categories; -1 where undefined),
        area "all", 100 detections; ``iou_thresholds``, ``recall_thresholds``, ``category_ids``, ``category_names``,
        ``num_images``, ``num_detections``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    for key in ("images", "annotations", "categories"):
        if key not in gt_coco:
            raise ConfigError(f"gt_coco lacks {key!r}; pass a COCO detection dict (PairedDetDataset.to_coco()).")
    gt = copy.deepcopy(gt_coco)
    gt.setdefault("info", {})
    for a in gt["annotations"]:
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2]) * float(a["bbox"][3]))
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    cat_ids = [c["id"] for c in cats]
    names = [str(c.get("name", c["id"])) for c in cats]
    dets = [dict(d) for d in detections]
    for i, d in enumerate(dets):
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in d]
        if missing:
            raise ConfigError(
                f"detection #{i} lacks {missing}; each needs image_id, category_id, bbox [x, y, w, h] and score.")
        d["bbox"] = [float(v) for v in d["bbox"]]
        d["score"] = float(d["score"])
    out: dict[str, Any] = {"num_images": len(gt["images"]), "num_detections": len(dets), "category_ids": cat_ids,
                           "category_names": names}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):  # pycocotools prints its progress and summary table
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes cannot take an empty list; an empty result set still gives pycocotools' -1 / 0 semantics
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = ev.stats
        precision = ev.eval["precision"][:, :, :, 0, -1]  # area all, maxDets 100
        iou_thr, rec_thr = ev.params.iouThrs, ev.params.recThrs
    for key, v in zip(_STAT_KEYS, stats, strict=True):
        out[key] = _pct(float(v))
    per, per50 = {}, {}
    for k, name in enumerate(names):
        p = precision[:, :, k]
        per[name] = float(p[p > -1].mean()) * 100.0 if (p > -1).any() else None
        p50 = precision[0, :, k]
        per50[name] = float(p50[p50 > -1].mean()) * 100.0 if (p50 > -1).any() else None
    out.update({"per_class_AP": per, "per_class_AP50": per50, "precision": np.asarray(precision, np.float64),
                "iou_thresholds": np.asarray(iou_thr).tolist(), "recall_thresholds": np.asarray(rec_thr).tolist()})
    return out


# ------------------------------------------------------------------------------------------------ KAIST miss rate
def _as_boxes(value: Any) -> np.ndarray:
    arr = np.asarray(value if value is not None else np.zeros((0, 4)), np.float64)
    return arr.reshape(-1, 4)


def _overlaps(dets: np.ndarray, gts: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """``(D, G)``: IoU for targets, intersection / detection area for ignore regions."""
    if len(dets) == 0 or len(gts) == 0:
        return np.zeros((len(dets), len(gts)))
    ix1 = np.maximum(dets[:, None, 0], gts[None, :, 0])
    iy1 = np.maximum(dets[:, None, 1], gts[None, :, 1])
    ix2 = np.minimum(dets[:, None, 2], gts[None, :, 2])
    iy2 = np.minimum(dets[:, None, 3], gts[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_d = ((dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]))[:, None]
    area_g = ((gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]))[None, :]
    denom = np.where(ignore[None, :], area_d, area_d + area_g - inter)
    return np.where(denom > 0, inter / np.maximum(denom, 1e-12), 0.0)


def match_image(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray, gt_ignore: np.ndarray,
                iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Match one image's detections (module docstring).

    Returns:
        ``(scores, outcome)`` sorted by decreasing score; outcome 1 = true positive, 0 = false positive, -1 = matched
        an ignore region (discarded).
    """
    order = np.argsort(-det_scores, kind="stable")
    dets, scores = det_boxes[order], det_scores[order]
    ov = _overlaps(dets, gt_boxes, gt_ignore)
    taken = np.zeros(len(gt_boxes), bool)
    outcome = np.zeros(len(dets), np.int64)
    for d in range(len(dets)):
        cand = np.flatnonzero(~gt_ignore & ~taken & (ov[d] >= iou))
        if len(cand):
            g = cand[np.argmax(ov[d, cand])]
            taken[g] = True
            outcome[d] = 1
        elif (gt_ignore & (ov[d] >= iou)).any():
            outcome[d] = -1
    return scores, outcome


def kaist_miss_rate(
    gt_per_image: Sequence[Mapping[str, Any]],
    dets_per_image: Sequence[Mapping[str, Any]],
    setting: str = "reasonable",
    iou: float = 0.5,
    min_height: float = 50.0,
    det_height_margin: float = 1.25,
) -> dict[str, Any]:
    """Log-average miss rate (MR^-2) over FPPI in [1e-2, 1e0], in percent.

    Args:
        gt_per_image: per image ``{"boxes": (N, 4) xyxy, "ignore": (N,) bool (optional)}`` (ignore regions: KAIST
            people / person? / cyclist, occluded or small people).
        dets_per_image: per image ``{"boxes": (M, 4) xyxy, "scores": (M,)}``, same order and length.
        setting: ``"reasonable"``: targets shorter than ``min_height`` become ignore regions and detections shorter
            than ``min_height / det_height_margin`` are removed before matching (the Caltech protocol, so that
            detections of just-too-small people are not counted as false positives); ``"all"``: no height rule.
        iou: match threshold.
        min_height: reasonable-setting height in pixels.
        det_height_margin: the Caltech detection-height margin (1.25).

    Returns:
        ``{"mr2": percent, "miss_rate_at": {fppi: percent} at the 9 reference points, "fppi": array, "miss_rate":
        array (the full curve, one point per kept detection, starting at (0, 1)), "num_images", "num_targets",
        "num_detections" (kept, ignore-matched ones excluded), "num_ignored_detections"}``. The miss rate at a
        reference FPPI is that of the last curve point at or below it (1.0 when none).
    """
    if setting not in KAIST_SETTINGS:
        raise ConfigError(f"setting must be one of {KAIST_SETTINGS}, got {setting!r}.")
    if len(gt_per_image) != len(dets_per_image):
        raise ConfigError(f"gt_per_image has {len(gt_per_image)} images but dets_per_image {len(dets_per_image)}.")
    all_scores, all_outcomes, npos, n_ign = [], [], 0, 0
    for gt, dt in zip(gt_per_image, dets_per_image, strict=True):
        gb = _as_boxes(gt.get("boxes"))
        gi = np.asarray(gt.get("ignore", np.zeros(len(gb), bool)), bool).reshape(-1)
        db = _as_boxes(dt.get("boxes"))
        ds = np.asarray(dt.get("scores", np.zeros(len(db))), np.float64).reshape(-1)
        if len(gi) != len(gb) or len(ds) != len(db):
            raise ConfigError("each image needs as many ignore flags as gt boxes and as many scores as detections.")
        if setting == "reasonable":
            gi = gi | ((gb[:, 3] - gb[:, 1]) < min_height)
            keep = (db[:, 3] - db[:, 1]) >= min_height / det_height_margin
            db, ds = db[keep], ds[keep]
        npos += int((~gi).sum())
        scores, outcome = match_image(db, ds, gb, gi, iou)
        n_ign += int((outcome == -1).sum())
        all_scores.append(scores[outcome >= 0])
        all_outcomes.append(outcome[outcome >= 0])
    n_img = len(gt_per_image)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    outcome = np.concatenate(all_outcomes) if all_outcomes else np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(outcome[order] == 1)
    fp = np.cumsum(outcome[order] == 0)
    fppi = np.concatenate([[0.0], fp / max(n_img, 1)])
    miss = np.concatenate([[1.0], 1.0 - tp / npos]) if npos else np.full(len(tp) + 1, np.nan)
    at = []
    for ref in FPPI_POINTS:
        idx = np.flatnonzero(fppi <= ref + 1e-12)
        at.append(miss[idx[-1]] if len(idx) else 1.0)
    at_arr = np.asarray(at)
    mr2 = float(np.exp(np.mean(np.log(np.maximum(at_arr, 1e-10))))) * 100.0 if npos else None
    return {"mr2": mr2, "miss_rate_at": {float(r): float(m) * 100.0 for r, m in zip(FPPI_POINTS, at_arr, strict=True)},
            "fppi": fppi, "miss_rate": miss, "num_images": n_img, "num_targets": npos,
            "num_detections": int(len(scores)), "num_ignored_detections": n_ign}


# ------------------------------------------------------------------------------------------------ report and plots
def _json_safe(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _fmt(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _normalise_results(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """One result (has ``mAP`` or ``mr2``) or ``{split: result}``."""
    if "mAP" in results or "mr2" in results:
        return {"eval": results}
    if not results:
        raise ConfigError("results is empty: pass coco_evaluate() output or {split: coco_evaluate() output}.")
    return dict(results)


def write_det_report(results: Mapping[str, Any], class_names: Sequence[str], out_dir: str | Path
                     ) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.md`` (summary table and per-class AP table).

    Args:
        results: :func:`coco_evaluate` output (optionally with a ``"kaist"`` :func:`kaist_miss_rate` entry), or
            ``{split_or_condition: that}``.
        class_names: class names in label order (COCO category id = label + 1).
        out_dir: created if missing.

    Returns:
        (json_path, md_path). The JSON keeps scalars, per-class values and the PR curve at IoU 0.5 per class.
    """
    names = [str(n) for n in class_names]
    runs = _normalise_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"units": "percent", "class_names": names, "results": {}}
    for split, r in runs.items():
        entry = {k: v for k, v in r.items() if k not in ("precision", "fppi", "miss_rate", "kaist")}
        if "precision" in r:
            p = np.asarray(r["precision"])
            entry["pr_curve_iou50"] = {names[k] if k < len(names) else str(k): p[0, :, k] for k in range(p.shape[2])}
        if "kaist" in r:
            entry["kaist"] = {k: v for k, v in r["kaist"].items() if k not in ("fppi", "miss_rate")}
        payload["results"][split] = entry
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    json_path.write_text(json.dumps(_json_safe(payload), indent=2) + "\n", encoding="utf-8")
    splits = list(runs)
    lines = ["# Detection metrics", "", "COCO AP in percent (pycocotools). – : no ground truth in that range.", "",
             "| split | mAP | AP50 | AP75 | AP_s | AP_m | AP_l | MR^-2 |", "|---|" + "---:|" * 7]
    for s in splits:
        r = runs[s]
        mr = r.get("mr2", r.get("kaist", {}).get("mr2") if isinstance(r.get("kaist"), Mapping) else None)
        lines.append(f"| {_cell(s)} | " + " | ".join(_fmt(r.get(k)) for k in (
            "mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")) + f" | {_fmt(mr)} |")
    lines += ["", "## Per-class AP (AP@[.5:.95] / AP50)", "",
              "| class | " + " | ".join(_cell(s) for s in splits) + " |", "|---|" + "---:|" * len(splits)]
    for name in names:
        cells = []
        for s in splits:
            r = runs[s]
            cells.append(f"{_fmt(r.get('per_class_AP', {}).get(name))} / {_fmt(r.get('per_class_AP50', {}).get(name))}")
        lines.append(f"| {_cell(name)} | " + " | ".join(cells) + " |")
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json_path, md_path


def plot_pr_curves(results: Mapping[str, Any], class_names: Sequence[str], out_png: str | Path,
                   iou_index: int = 0) -> Path:
    """Precision-recall curve per class at IoU 0.5 (``iou_index`` into ``iou_thresholds``) from :func:`coco_evaluate`.

    Classes without ground truth are left out. Uses matplotlib's Agg canvas (no window, no pyplot state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if "precision" not in results:
        raise ConfigError("results has no 'precision' array; pass coco_evaluate() output.")
    p = np.asarray(results["precision"])
    rec = np.asarray(results.get("recall_thresholds", np.linspace(0, 1, p.shape[1])))
    thr = results.get("iou_thresholds", [0.5])[iou_index]
    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for k in range(p.shape[2]):
        curve = p[iou_index, :, k]
        if (curve < 0).all():
            continue
        name = class_names[k] if k < len(class_names) else str(k)
        ap = float(curve[curve > -1].mean()) * 100
        ax.plot(rec, np.where(curve < 0, np.nan, curve), label=f"{name} (AP {ap:.1f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall, IoU {thr:.2f}")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower left", fontsize=8)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


__all__ = ["FPPI_POINTS", "coco_evaluate", "kaist_miss_rate", "match_image", "plot_pr_curves", "write_det_report"]
