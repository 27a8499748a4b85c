"""``ivtune score det|seg|sod``: score prediction files against ground truth without a model, the way authors share
their results, and write the same ``metrics.json`` / ``metrics.md`` as ``ivtune eval`` (the tasks' report writers).

- **det**: ground truth is a COCO json, a dataset config + split (the dataset's :meth:`to_coco`), or the
  community's KAIST test annotation json (images with ``im_name`` such as ``set06/V000/I00019``); predictions are a
  COCO results json or the KAIST txt papers publish (``image_id,x,y,w,h,score``, image ids 1-based in ground-truth
  order, i.e. by increasing image id). COCO AP through pycocotools for COCO-style data; the log-average miss rate
  under a named protocol (docs/METHOD.md section 9.4) for KAIST data, overall, day and night.
- **seg**: prediction PNGs of class ids matched to label PNGs by file stem (``ivtune predict``'s ``NAME_mask.png``
  match ``NAME``); mIoU and per-class IoU from the task's confusion matrix, overall and per condition.
- **sod**: saliency maps matched to ground-truth masks by stem, read as 8-bit grey, resized to the ground-truth size
  with bilinear interpolation when they differ and min-max normalised, as the standard evaluation
  (PySODEvalToolkit, py_sod_metrics) does; S, weighted F, max / mean / adaptive F and E, MAE.

Every prediction without ground truth, and every ground truth without a prediction, is named (count and paths) in
the result, never skipped silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import load_config
from ..data.jsonsafe import json_safe
from ..data.layout import index_dir, read_classes_file, require_dir
from ..data.pairs import condition_from_name
from ..errors import ConfigError, DataError
from ..tasks import get_task

SHOWN = 10  # unmatched paths printed on the terminal; score.json lists them all
PREDICT_MASK_SUFFIX = "_mask"  # ivtune predict (seg) writes NAME_mask.png beside NAME_color.png / NAME_overlay.png
PREDICT_PANEL_SUFFIX = "_panel"  # ivtune predict (sod) writes NAME.png and NAME_panel.png


@dataclass
class ScoreResult:
    """What one ``ivtune score`` call found.

    Attributes:
        task: ``det``, ``seg`` or ``sod``.
        results: the rows the task's report writer takes (``{"all": .., "day": ..}`` or ``{dataset: ..}``).
        info: what the report writer needs besides the results (``classes``).
        summary: the one JSON object ``--json`` prints (percent for det / seg, fractions for sod, as eval).
        unmatched: ``{"predictions_without_ground_truth": [...], "ground_truth_without_predictions": [...], ...}``,
            each entry naming a file (and a line / entry for rows of one file).
    """

    task: str
    results: dict[str, dict]
    info: dict[str, Any]
    summary: dict[str, Any]
    unmatched: dict[str, list[str]] = field(default_factory=dict)

    def write(self, out_dir: str | Path) -> Path:
        """``metrics.json`` / ``metrics.md`` (and plots) through the task's report writer, plus ``score.json`` (the
        summary with every unmatched path). Returns the folder."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        get_task(self.task).write_report(self.results, self.info, out)
        (out / "score.json").write_text(json.dumps(self.full_summary(), indent=2) + "\n", encoding="utf-8")
        return out

    def full_summary(self) -> dict[str, Any]:
        """The summary, JSON-ready (NaN as null), with the unmatched files: ``{kind: {"count": n, "paths": [...]}}``."""
        return json_safe({**self.summary,
                          "unmatched": {k: {"count": len(v), "paths": v} for k, v in self.unmatched.items()}})

    def unmatched_lines(self, shown: int = SHOWN) -> list[str]:
        """Terminal lines: one per non-empty kind with its count, then up to ``shown`` of its paths."""
        lines = []
        for kind, items in self.unmatched.items():
            if items:
                lines.append(f"{kind.replace('_', ' ')}: {len(items)}")
                lines += [f"  {p}" for p in items[:shown]]
                if len(items) > shown:
                    lines.append(f"  ... ({len(items) - shown} more in score.json)")
        return lines


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot parse {what} {path}: {exc}.") from exc


# ================================================================================================ det
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_coco_gt(data: Any, path: Path) -> dict[str, Any]:
    """A COCO detection ground truth, checked enough that pycocotools never asserts on it."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: not a COCO detection ground truth (needs 'images', 'annotations' and 'categories' "
                        "lists), nor a KAIST annotation json (images with 'im_name').")
    if not data["images"]:
        raise DataError(f"{path}: has no images.")
    cats = set()
    for k, c in enumerate(data["categories"]):
        if not isinstance(c, Mapping) or not _is_int(c.get("id")):
            raise DataError(f"{path}: categories[{k}] needs an integer 'id', got {c!r:.120}.")
        cats.add(c["id"])
    ids = set()
    for k, im in enumerate(data["images"]):
        if not isinstance(im, Mapping) or not _is_int(im.get("id")):
            raise DataError(f"{path}: images[{k}] needs an integer 'id', got {im!r:.120}.")
        if im["id"] in ids:
            raise DataError(f"{path}: duplicate image id {im['id']} (images[{k}]); image ids must be unique.")
        ids.add(im["id"])
    for k, a in enumerate(data["annotations"]):
        where = f"{path}: annotations[{k}]"
        if not isinstance(a, Mapping) or a.get("image_id") not in ids:
            raise DataError(f"{where} has image_id {a.get('image_id') if isinstance(a, Mapping) else a!r}, which "
                            "is not an image of this file.")
        if a.get("category_id") not in cats:
            raise DataError(f"{where} has category_id {a.get('category_id')!r}, absent from 'categories'.")
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)) or box[2] < 0 or box[3] < 0:
            raise DataError(f"{where}: bbox must be 4 finite numbers [x, y, w, h] with w, h >= 0, got {box!r}.")
    return data


def _is_kaist_json(data: Any) -> bool:
    """The community's KAIST annotation json: images named ``im_name`` (``set06/V000/I00019``), or annotations with
    KAIST's ``occlusion`` level and no ivtune export marker."""
    if not isinstance(data, dict) or "miss_rate_protocol" in data:
        return False
    images, anns = data.get("images"), data.get("annotations")
    first_image = images[0] if isinstance(images, list) and images else None
    first_ann = anns[0] if isinstance(anns, list) and anns else None
    return (isinstance(first_image, Mapping) and "im_name" in first_image) or (
        isinstance(first_ann, Mapping) and "occlusion" in first_ann and "kaist_category" not in first_ann)


def _det_ground_truth(gt: Path, split: str | None, overrides: Sequence[str]) -> tuple[str, Any, list[str]]:
    """``("kaist", KaistGroundTruth, classes)`` for the community KAIST json, else ``("coco", dict, classes)``."""
    from ..tasks.det.kaist_files import read_kaist_annotations

    suffix = gt.suffix.lower()
    if suffix in (".yaml", ".yml"):
        cfg = load_config(gt, list(overrides))
        if cfg.task != "det":
            raise ConfigError(f"{gt} is a {cfg.task!r} config; `ivtune score det` needs a detection config (task: det)."
                              f" Use `ivtune score {cfg.task}` for that task.")
        split = split or cfg.data.test_split or cfg.data.val_split
        if not split:
            raise ConfigError(f"{gt} names no test_split or val_split; pass --split.")
        ds = get_task("det").build_dataset(cfg, split, train=False, strict=False)
        if len(ds) == 0:
            raise DataError(f"split {split!r} of {cfg.data.dataset} at {cfg.data.root} has no images.")
        return "coco", ds.to_coco(), list(ds.classes)
    if split is not None or overrides:
        raise ConfigError("--split and --set apply to a dataset config GT (.yaml); GT here is a json file.")
    if suffix != ".json":
        raise ConfigError(f"GT {gt} must be a COCO / KAIST annotation .json or a dataset config .yaml.")
    data = _load_json(gt, "ground-truth json")
    if _is_kaist_json(data):
        return "kaist", read_kaist_annotations(gt), ["person"]
    data = _check_coco_gt(data, gt)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    return "coco", data, [str(c.get("name", c["id"])) for c in cats]


def _read_coco_results(path: Path, image_ids: set[int], cat_ids: set[int]
                       ) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """A COCO results list -> ``(detections, entries without ground-truth image, entries of unknown category)``."""
    data = _load_json(path, "COCO results json")
    if not isinstance(data, list):
        hint = (" (ivtune predict's detections.json numbers the pairs it was given, not this ground truth's images)"
                if isinstance(data, dict) and "detections" in data else "")
        raise DataError(f"{path}: a COCO results file is a json list of {{image_id, category_id, bbox, score}}, got "
                        f"{type(data).__name__}{hint}.")
    dets, no_image, no_cat = [], [], []
    for k, d in enumerate(data):
        where = f"{path} entry {k}"
        if not isinstance(d, Mapping):
            raise DataError(f"{where} is {type(d).__name__}; expected {{image_id, category_id, bbox, score}}.")
        box, score = d.get("bbox"), d.get("score")
        if not _is_int(d.get("image_id")) or not _is_int(d.get("category_id")):
            raise DataError(f"{where}: image_id and category_id must be integers, got {d.get('image_id')!r} and "
                            f"{d.get('category_id')!r}.")
        if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)) or box[2] < 0 or box[3] < 0:
            raise DataError(f"{where}: bbox must be 4 finite numbers [x, y, w, h] with w, h >= 0, got {box!r}.")
        if not _finite(score):
            raise DataError(f"{where}: score must be a finite number, got {score!r}.")
        if d["image_id"] not in image_ids:
            no_image.append(f"{where}: image_id {d['image_id']}")
        elif d["category_id"] not in cat_ids:
            no_cat.append(f"{where}: category_id {d['category_id']}")
        else:
            dets.append({"image_id": d["image_id"], "category_id": d["category_id"],
                         "bbox": [float(v) for v in box], "score": float(score)})
    return dets, no_image, no_cat


def _txt_as_coco_results(path: Path, coco: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """A KAIST txt against COCO ground truth of one category: ``(COCO results, lines without ground-truth image)``."""
    from ..tasks.det.kaist_files import read_kaist_txt
    from ..tasks.det.metrics import kaist_ground_truth

    if len(coco["categories"]) != 1:
        raise ConfigError(f"{path}: a KAIST txt has no class column, but the ground truth has "
                          f"{len(coco['categories'])} categories; give a COCO results json instead.")
    cat = coco["categories"][0]["id"]
    gt = kaist_ground_truth(coco)
    preds = read_kaist_txt(path, gt)
    dets = [{"image_id": img_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
            for img_id, d in zip(gt.image_ids, preds.dets, strict=True)
            for (x1, y1, x2, y2), s in zip(d["boxes"].tolist(), d["scores"].tolist(), strict=True)]
    return dets, [f"{path} {where}: image_id {img} (ids are 1..{len(gt)})" for where, img in preds.unmatched]


def _det_summary(results: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "mAP" in results["all"]:
        out.update({k: results["all"].get(k) for k in ("mAP", "AP50", "AP75")})
        out["per_class_AP"] = results["all"].get("per_class_AP")
        out["by_condition"] = {c: {k: r.get(k) for k in ("mAP", "AP50", "AP75")}
                               for c, r in results.items() if c != "all"}
    k = results["all"].get("kaist")
    if isinstance(k, Mapping):
        out.update({"protocol": k["protocol"], "fppi_decimals": k.get("fppi_decimals"),
                    "miss_rate": dict(k["miss_rate"]), "num_images": k["num_images"],
                    "num_targets": k["num_targets"]})
    return out


def score_det(gt: str | Path, pred: str | Path, *, split: str | None = None, overrides: Sequence[str] = (),
              protocol: str | None = None, fppi_decimals: int | None = None) -> ScoreResult:
    """Score detection predictions.

    Args:
        gt: a COCO json, a dataset config (.yaml; with ``split`` and ``overrides``), or the KAIST annotation json.
        pred: a COCO results json or a KAIST txt.
        split: the config's split (default: its test split, else its val split).
        overrides: ``KEY=VALUE`` config overrides (``--set``).
        protocol: the miss-rate protocol (``kaist-reasonable``, ``kaist-all``, ``caltech-reasonable``). Default: the
            KAIST json's ``kaist-reasonable`` / the KAIST dataset's ``data.kaist_protocol``; with COCO ground truth a
            protocol also scores the ``person`` category's miss rate beside COCO AP.
        fppi_decimals: round the reference FPPI (4: MLPD's script); None: exact, as Dollár's toolbox.

    Returns:
        A :class:`ScoreResult`; its summary holds ``mAP`` / ``AP50`` / ``AP75`` (COCO) and / or ``protocol`` and
        ``miss_rate`` ``{"all", "day", "night"}`` (percent).
    """
    from ..tasks.det.kaist import DEFAULT_PROTOCOL, get_protocol, log_average_miss_rate
    from ..tasks.det.kaist_files import read_coco_results, read_kaist_txt
    from ..tasks.det.metrics import miss_rate_rows
    from ..tasks.det.task import DetEvaluator

    gt, pred = Path(gt), Path(pred)
    if protocol is not None:
        get_protocol(protocol)  # an unknown name fails before any file is read
    if pred.suffix.lower() not in (".json", ".txt"):
        raise ConfigError(f"PRED {pred} must be a COCO results .json or a KAIST .txt (image_id,x,y,w,h,score).")
    kind, truth, classes = _det_ground_truth(gt, split, overrides)
    unmatched: dict[str, list[str]] = {}
    if kind == "kaist":
        reader = read_kaist_txt if pred.suffix.lower() == ".txt" else read_coco_results
        preds = reader(pred, truth)
        proto = protocol or DEFAULT_PROTOCOL
        mr = {**log_average_miss_rate(truth.images, preds.dets, proto, truth.conditions, fppi_decimals),
              "fppi_decimals": fppi_decimals}
        for cond in ("day", "night"):
            mr["miss_rate"].setdefault(cond, None)
        results = {name: {"kaist": row} for name, row in miss_rate_rows(mr).items()}
        unmatched["predictions_without_ground_truth"] = [f"{pred} {where}: image_id {img}"
                                                          for where, img in preds.unmatched]
        if preds.num_other_category:
            unmatched["predictions_of_other_categories"] = [
                f"{pred}: {preds.num_other_category} entries with category_id != 1 (person)"]
        unmatched["ground_truth_without_predictions"] = [
            f"{gt}: image id {i} ({name})" for i, name, d in zip(truth.image_ids, truth.names, preds.dets, strict=True)
            if len(d["scores"]) == 0]
    else:
        ids = {im["id"] for im in truth["images"]}
        if pred.suffix.lower() == ".txt":
            dets, no_image = _txt_as_coco_results(pred, truth)
            no_cat: list[str] = []
        else:
            dets, no_image, no_cat = _read_coco_results(pred, ids, {c["id"] for c in truth["categories"]})
        unmatched["predictions_without_ground_truth"] = no_image
        if no_cat:
            unmatched["predictions_of_other_categories"] = no_cat
        seen = {d["image_id"] for d in dets}
        unmatched["ground_truth_without_predictions"] = [
            f"{gt}: image id {im['id']} ({im.get('name', im.get('file_name', '?'))})"
            for im in sorted(truth["images"], key=lambda im: im["id"]) if im["id"] not in seen]
        ev = DetEvaluator(lambda: truth, protocol, fppi_decimals)
        ev.detections = dets
        ev.conditions = {im["id"]: im.get("condition") for im in truth["images"]}
        results = ev.evaluate()
    summary = {"task": "det", "ground_truth": str(gt), "predictions": str(pred), **_det_summary(results)}
    return ScoreResult("det", results, {"classes": classes}, summary, unmatched)


# ================================================================================================ seg / sod
def _match_stems(pred_dir: Path, gt_dir: Path, suffix: str, mode: str
                 ) -> tuple[list[tuple[str, Path, Path]], dict[str, list[str]]]:
    """Prediction and ground-truth files matched by stem: ``([(stem, pred, gt)], unmatched)``.

    ``mode`` ``"only"``: when some prediction stems end in ``suffix`` (``ivtune predict``'s ``NAME_mask``), only
    those are predictions, for ``NAME``. ``"skip"``: ``NAME{suffix}`` files beside a ``NAME`` file are
    ``ivtune predict``'s panels, not predictions.
    """
    preds = index_dir(require_dir(pred_dir, "prediction"))
    gts = index_dir(require_dir(gt_dir, "ground-truth"))
    if mode == "only" and any(s.endswith(suffix) for s in preds):
        preds = {s[: -len(suffix)]: p for s, p in preds.items() if s.endswith(suffix)}
    elif mode == "skip":
        preds = {s: p for s, p in preds.items() if not (s.endswith(suffix) and s[: -len(suffix)] in preds)}
    if not preds:
        raise DataError(f"No prediction images in {pred_dir} (png, jpg, bmp, tif).")
    pairs = [(s, preds[s], gts[s]) for s in sorted(set(preds) & set(gts))]
    unmatched = {"predictions_without_ground_truth": [str(preds[s]) for s in sorted(set(preds) - set(gts))],
                 "ground_truth_without_predictions": [str(gts[s]) for s in sorted(set(gts) - set(preds))]}
    if not pairs:
        raise DataError(f"No prediction in {pred_dir} has a ground truth of the same file stem in {gt_dir} (e.g. "
                        f"{next(iter(preds))!r} vs {next(iter(gts), '(none)')!r}); name the files alike.")
    return pairs, unmatched


def _raise_listed(problems: list[str], what: str, fix: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:SHOWN]) + (f"\n  ... ({len(problems) - SHOWN} more)" if len(problems) > SHOWN
                                                   else "")
        raise DataError(f"{len(problems)} {what}:\n  {shown}\n{fix}")


def _seg_classes(classes: Sequence[str] | str | None, dataset: str | None) -> list[str]:
    from ..tasks.seg.datasets import DATASETS

    if (classes is None) == (dataset is None):
        raise ConfigError("give the class names with exactly one of --classes (comma-separated, or a classes.txt) "
                          f"and --dataset ({', '.join(DATASETS)}).")
    if dataset is not None:
        key = dataset.lower()
        if key not in DATASETS:
            raise ConfigError(f"Unknown segmentation dataset {dataset!r}. Known: {', '.join(DATASETS)}.")
        if DATASETS[key].classes is None:
            raise ConfigError(f"the {key} dataset reads its classes from its root; pass --classes instead.")
        return list(DATASETS[key].classes)
    if isinstance(classes, str):
        path = Path(classes)
        names = read_classes_file(path) if path.is_file() else [c.strip() for c in classes.split(",")]
    else:
        names = [str(c).strip() for c in classes]
    if not names or any(not n for n in names):
        raise ConfigError(f"--classes {classes!r}: expected class names separated by commas (class 0 first), or a "
                          "classes.txt file.")
    return names


def score_seg(pred_dir: str | Path, label_dir: str | Path, *, classes: Sequence[str] | str | None = None,
              dataset: str | None = None, ignore_index: int = 255) -> ScoreResult:
    """Score segmentation predictions: PNGs of class ids against label PNGs, matched by file stem.

    Args:
        pred_dir: prediction folder (``NAME.png``, or ``ivtune predict``'s ``NAME_mask.png``).
        label_dir: label folder (``NAME.png``), class indices and ``ignore_index``.
        classes: class names in index order (a list, ``"a,b,c"`` or a classes.txt path); or ``dataset``.
        dataset: a segmentation dataset name whose class list to use (``mfnet`` ...).
        ignore_index: label value left out of the metrics.

    Returns:
        A :class:`ScoreResult` with ``{"all": .., condition: ..}`` (conditions from the names, as ``ivtune eval``).
    """
    import torch

    from ..data.io import read_label
    from ..tasks.seg.dataset import bad_label_values
    from ..tasks.seg.evaluator import SegEvaluator

    names = _seg_classes(classes, dataset)
    pairs, unmatched = _match_stems(Path(pred_dir), Path(label_dir), PREDICT_MASK_SUFFIX, "only")
    ev = SegEvaluator(len(names), ignore_index)  # the evaluator of ivtune eval, fed from files
    problems = []
    for stem, p, g in pairs:
        pred, label = read_label(p), read_label(g)
        if pred.shape != label.shape:
            problems.append(f"{p}: prediction {pred.shape} (H, W) but label {g} is {label.shape}")
            continue
        bad_pred = [int(v) for v in np.unique(pred) if not 0 <= v < len(names)]
        bad_label = bad_label_values(label, len(names), ignore_index)
        if bad_pred or bad_label:
            problems.append(f"{p if bad_pred else g}: values {(bad_pred or bad_label)[:10]} outside the "
                            f"{len(names)} classes (0..{len(names) - 1})" + ("" if bad_pred else
                                                                               f" and != ignore_index {ignore_index}"))
            continue
        pt, lt = torch.from_numpy(pred.astype("int64"))[None], torch.from_numpy(label.astype("int64"))[None]
        for key in ("all", condition_from_name(stem)):
            if key in ev.matrices:
                ev.matrices[key].update(pt, lt)
    _raise_listed(problems, "prediction / label file(s) cannot be scored",
                  "Predictions must be class-index PNGs at the label size; check --classes / --dataset and "
                  "--ignore-index.")
    results = ev.evaluate()
    if not results:
        raise DataError(f"every label pixel in {label_dir} is ignore_index {ignore_index}; nothing to score.")
    summary = {"task": "seg", "predictions": str(pred_dir), "ground_truth": str(label_dir), "num_images": len(pairs),
               "miou": results["all"]["miou"], "pixel_acc": results["all"]["pixel_acc"],
               "mean_acc": results["all"]["mean_acc"],
               "per_class_iou": dict(zip(names, results["all"]["per_class_iou"], strict=True)),
               "by_condition": {c: r["miou"] for c, r in results.items() if c != "all"}}
    return ScoreResult("seg", results, {"classes": names}, summary, unmatched)


def _read_gray_u8(path: Path):
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)  # what the SOD toolkits read: 8-bit luminance
    if arr is None:
        raise DataError(f"Cannot read image {path}: corrupt, truncated or not an image.")
    return arr


def score_sod(map_dir: str | Path, gt_dir: str | Path, *, name: str | None = None) -> ScoreResult:
    """Score saliency maps against ground-truth masks, matched by file stem.

    Each map is read as 8-bit grey and, when its size differs from the mask's, resized to it with bilinear
    interpolation (``cv2.INTER_LINEAR``, the toolkits' choice); py_sod_metrics then min-max normalises the map and
    thresholds the mask at 128.

    Args:
        map_dir: saliency maps (``NAME.png``; ``ivtune predict``'s ``NAME_panel.png`` files are skipped).
        gt_dir: masks (``NAME.png``).
        name: the results row (default: the ground-truth folder's name).
    """
    import cv2

    from ..tasks.sod.metrics import METRIC_KEYS, SODMetrics

    pairs, unmatched = _match_stems(Path(map_dir), Path(gt_dir), PREDICT_PANEL_SUFFIX, "skip")
    metrics = SODMetrics()
    for _, p, g in pairs:
        pred, gt = _read_gray_u8(p), _read_gray_u8(g)
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, dsize=gt.shape[::-1], interpolation=cv2.INTER_LINEAR)
        metrics.update(pred, gt, normalize=True)
    key = name or Path(gt_dir).resolve().name
    results = {key: metrics.compute()}
    summary = {"task": "sod", "predictions": str(map_dir), "ground_truth": str(gt_dir),
               "num_images": len(pairs), **{k: results[key][k] for k in METRIC_KEYS}}
    return ScoreResult("sod", results, {"classes": ["background", "salient"]}, summary, unmatched)


__all__ = ["ScoreResult", "score_det", "score_seg", "score_sod"]
