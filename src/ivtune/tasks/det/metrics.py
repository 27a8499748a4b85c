"""Detection metrics: COCO AP through pycocotools, the KAIST log-average miss rate, the report and PR curves.

- :func:`coco_evaluate`: mAP (AP@[.5:.95]), AP50, AP75, AP small / medium / large, AR, per-class AP and AP50, all in
  percent, plus pycocotools' precision array for PR curves.
- :func:`kaist_miss_rate`: the log-average miss rate MR^-2 (Dollar et al.) of COCO results against COCO ground truth
  under a named protocol (``kaist-reasonable`` by default; :mod:`ivtune.tasks.det.kaist` holds the procedure and
  the protocols, docs/METHOD.md section 9.4), overall and per condition.
- :func:`write_det_report`: ``metrics.json`` / ``metrics.md`` with COCO AP and / or the miss rates.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...data.jsonsafe import json_safe
from ...errors import ConfigError
from .kaist import DEFAULT_PROTOCOL, PROTOCOLS, MissRateProtocol, get_protocol, log_average_miss_rate
from .kaist_files import KaistGroundTruth

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
def _person_category(gt_coco: Mapping[str, Any]) -> int:
    ids = [c["id"] for c in gt_coco.get("categories", []) if str(c.get("name", "")).lower() == "person"]
    if len(ids) != 1:
        names = [str(c.get("name", c.get("id"))) for c in gt_coco.get("categories", [])]
        raise ConfigError(f"the miss rate scores pedestrians: the ground truth needs exactly one category named "
                          f"'person', it has {names}. Score COCO AP instead (no --protocol).")
    return int(ids[0])


def kaist_ground_truth(gt_coco: Mapping[str, Any], image_ids: Iterable[int] | None = None,
                       source: str = "<ground truth>") -> KaistGroundTruth:
    """COCO ground truth -> the per-image input of the miss-rate protocols, images by increasing id.

    Each box's label is its ``kaist_category`` (ivtune's KAIST export), else its category name (lower case); its
    height ``height``, else the box height; occlusion ``occlusion``, else 0; its ignore flag ``kaist_ignore`` (the
    KAIST file's own flag; ``iscrowd`` there marks the *training* ignore regions), else ``iscrowd`` or ``ignore``.
    The image size is the image's ``height`` / ``width``, its condition ``condition``.

    Args:
        gt_coco: a COCO detection dict (:meth:`PairedDetDataset.to_coco`, a COCO json).
        image_ids: keep only these images (None: all).
        source: how errors name the ground truth.
    """
    keep = None if image_ids is None else set(image_ids)
    names = {c["id"]: str(c.get("name", c["id"])).lower() for c in gt_coco["categories"]}
    images = sorted((im for im in gt_coco["images"] if keep is None or im["id"] in keep), key=lambda im: im["id"])
    rows: dict[int, list[Mapping[str, Any]]] = {im["id"]: [] for im in images}
    for a in gt_coco["annotations"]:
        if a["image_id"] in rows:
            rows[a["image_id"]].append(a)
    per_image, ann_ids = [], []
    for im in images:
        anns = rows[im["id"]]
        xywh = np.asarray([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        size = (float(im["height"]), float(im["width"])) if im.get("height") and im.get("width") else None
        per_image.append({
            "boxes": np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            "labels": [str(a.get("kaist_category", names.get(a["category_id"], a["category_id"]))) for a in anns],
            "heights": np.asarray([a.get("height", a["bbox"][3]) for a in anns], np.float64),
            "occlusion": np.asarray([a.get("occlusion", 0) for a in anns], np.int64),
            "ignore": np.asarray([bool(a["kaist_ignore"]) if "kaist_ignore" in a
                                  else bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0)) for a in anns], bool),
            "image_size": size,
        })
        ann_ids.append([a.get("id", k) for k, a in enumerate(anns)])
    return KaistGroundTruth(Path(source), [im["id"] for im in images],
                            [str(im.get("name", im.get("file_name", im["id"]))) for im in images],
                            [im.get("condition") for im in images], per_image, ann_ids)


def kaist_miss_rate(
    gt_coco: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    protocol: str | MissRateProtocol | None = None,
    conditions: Mapping[int, str | None] | None = None,
    fppi_decimals: int | None = None,
) -> dict[str, Any]:
    """Log-average miss rate MR^-2 of COCO results against COCO ground truth, overall and per condition.

    The COCO front end of :func:`ivtune.tasks.det.kaist.log_average_miss_rate` (docs/METHOD.md section 9.4): the
    ground truth goes through :func:`kaist_ground_truth`, the detections of the ``person`` category are scored.

    Args:
        gt_coco: COCO ground truth (ivtune's KAIST export carries the raw KAIST facts and ``miss_rate_protocol``).
        detections: COCO results (``image_id``, ``category_id``, ``bbox`` x y w h, ``score``).
        protocol: a registered protocol name or a protocol; None: the ground truth's ``miss_rate_protocol``, else
            ``kaist-reasonable``.
        conditions: ``{image_id: condition or None}``, the images to score (e.g. those an evaluation saw); None: every
            image, with its ``condition``.
        fppi_decimals: see :func:`~ivtune.tasks.det.kaist.log_average_miss_rate` (4 reproduces MLPD's script).

    Returns:
        :func:`~ivtune.tasks.det.kaist.log_average_miss_rate`'s dict: ``protocol``, ``mr2``, ``miss_rate``
        ``{"all": .., condition: ..}`` in percent, ``by_condition``, counts and the curve.
    """
    if not isinstance(gt_coco, Mapping) or not isinstance(gt_coco.get("images"), list):
        raise ConfigError("kaist_miss_rate takes COCO ground truth (a dict with 'images', 'annotations', "
                          "'categories'); for per-image box arrays use ivtune.tasks.det.kaist.log_average_miss_rate.")
    proto = get_protocol(protocol if protocol is not None else gt_coco.get("miss_rate_protocol", DEFAULT_PROTOCOL))
    person = _person_category(gt_coco)
    gt = kaist_ground_truth(gt_coco, None if conditions is None else conditions.keys())
    per_image: list[list[tuple[list[float], float]]] = [[] for _ in range(len(gt))]
    for d in detections:
        k = gt.index_of(int(d["image_id"]))
        if k is not None and int(d["category_id"]) == person:
            x, y, w, h = (float(v) for v in d["bbox"])
            per_image[k].append(([x, y, x + w, y + h], float(d["score"])))
    dets = [{"boxes": np.asarray([b for b, _ in rows], np.float64).reshape(-1, 4),
             "scores": np.asarray([sc for _, sc in rows], np.float64)} for rows in per_image]
    conds = gt.conditions if conditions is None else [conditions[i] for i in gt.image_ids]
    return {**log_average_miss_rate(gt.images, dets, proto, conds, fppi_decimals), "fppi_decimals": fppi_decimals}


def miss_rate_rows(mr: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """:func:`kaist_miss_rate` output -> one report row per image group: ``{"all": .., condition: ..}``.

    The ``all`` row is the whole result without ``by_condition``; each condition's row is its ``by_condition``
    entry with the protocol and the FPPI sampling (what :func:`write_det_report` reads as a ``"kaist"`` entry).
    """
    rows = {"all": {k: v for k, v in mr.items() if k != "by_condition"}}
    for cond, sub in mr.get("by_condition", {}).items():
        rows[cond] = {"protocol": mr["protocol"], **sub, "fppi_decimals": mr.get("fppi_decimals")}
    return rows


# ------------------------------------------------------------------------------------------------ report and plots


def _fmt(value: Any) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _normalise_results(results: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """One result (has ``mAP``, ``mr2`` or ``kaist``) or ``{split: result}``."""
    if "mAP" in results or "mr2" in results or "kaist" in results:
        return {"eval": results}
    if not results:
        raise ConfigError("results is empty: pass coco_evaluate() output or {split: coco_evaluate() output}.")
    return dict(results)


_CURVES = ("fppi", "miss_curve")  # per-detection arrays: kept in memory, not in metrics.json


def _miss_rate_section(runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """metrics.md lines for the ``kaist`` entries: MR^-2 per row, the protocol's rules and the FPPI sampling."""
    rows = {s: r["kaist"] for s, r in runs.items() if isinstance(r.get("kaist"), Mapping)}
    if not rows:
        return []
    lines = ["", "## Log-average miss rate (MR^-2)", "",
             "Percent, lower is better: the miss rate averaged in log space over 9 FPPI points in [1e-2, 1e0] "
             "(docs/METHOD.md section 9.4). FPPI is over each row's own images. – : no targets.", "",
             "| split | protocol | MR^-2 | images | targets | TP+FP | dets on ignore regions |",
             "|---|---|" + "---:|" * 5]
    for s, k in rows.items():
        counts = " | ".join(str(k.get(c, "–")) for c in ("num_images", "num_targets", "num_detections",
                                                          "num_ignored_detections"))
        lines.append(f"| {_cell(s)} | {_cell(k.get('protocol', '?'))} | {_fmt(k.get('mr2'))} | {counts} |")
    decimals = {k.get("fppi_decimals") for k in rows.values()}
    if decimals == {None}:
        lines += ["", "FPPI sampled at the exact points np.logspace(-2, 0, 9), as Dollár's toolbox (MLPD's script "
                  "rounds them to 4 decimals; `--fppi-decimals 4` reproduces that)."]
    else:
        lines += ["", f"FPPI sampled at points rounded to {', '.join(str(d) for d in sorted(decimals, key=str))} "
                  "decimals (MLPD's script); Dollár's toolbox uses the exact points."]
    for name in dict.fromkeys(str(k.get("protocol")) for k in rows.values()):
        if name in PROTOCOLS:
            lines += ["", PROTOCOLS[name].describe()]
    return lines


def write_det_report(results: Mapping[str, Any], class_names: Sequence[str], out_dir: str | Path
                     ) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``metrics.md`` (summary table, per-class AP table, miss-rate table).

    Args:
        results: :func:`coco_evaluate` output, optionally with a ``"kaist"`` :func:`kaist_miss_rate` entry (or only
            that entry, for miss-rate-only scoring), or ``{split_or_condition: that}``.
        class_names: class names in label order (COCO category id = label + 1).
        out_dir: created if missing.

    Returns:
        (json_path, md_path). The JSON keeps scalars, per-class values, the PR curve at IoU 0.5 per class and the
        miss rates (without the per-detection curve).
    """
    names = [str(n) for n in class_names]
    runs = _normalise_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"units": "percent", "class_names": names, "results": {}}
    for split, r in runs.items():
        entry = {k: v for k, v in r.items() if k not in ("precision", "kaist", *_CURVES)}
        if "precision" in r:
            p = np.asarray(r["precision"])
            entry["pr_curve_iou50"] = {names[k] if k < len(names) else str(k): p[0, :, k] for k in range(p.shape[2])}
        if isinstance(r.get("kaist"), Mapping):
            entry["kaist"] = {k: v for k, v in r["kaist"].items() if k not in _CURVES}
        payload["results"][split] = entry
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    json_path.write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
    splits = list(runs)
    lines = ["# Detection metrics", ""]
    if any("mAP" in runs[s] for s in splits):
        lines += ["COCO AP in percent (pycocotools). – : no ground truth in that range.", "",
                  "| split | mAP | AP50 | AP75 | AP_s | AP_m | AP_l | MR^-2 |", "|---|" + "---:|" * 7]
        for s in splits:
            r = runs[s]
            mr = r.get("mr2", r["kaist"].get("mr2") if isinstance(r.get("kaist"), Mapping) else None)
            lines.append(f"| {_cell(s)} | " + " | ".join(_fmt(r.get(k)) for k in (
                "mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large")) + f" | {_fmt(mr)} |")
        lines += ["", "## Per-class AP (AP@[.5:.95] / AP50)", "",
                  "| class | " + " | ".join(_cell(s) for s in splits) + " |", "|---|" + "---:|" * len(splits)]
        for name in names:
            cells = []
            for s in splits:
                r = runs[s]
                cells.append(f"{_fmt(r.get('per_class_AP', {}).get(name))} / "
                             f"{_fmt(r.get('per_class_AP50', {}).get(name))}")
            lines.append(f"| {_cell(name)} | " + " | ".join(cells) + " |")
    lines += _miss_rate_section(runs)
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


__all__ = ["coco_evaluate", "kaist_ground_truth", "kaist_miss_rate", "miss_rate_rows", "plot_pr_curves",
           "write_det_report"]
