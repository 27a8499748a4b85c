"""Salient object detection metrics on top of ``py_sod_metrics`` (pysodmetrics): S-measure, weighted F-measure,
F-measure and E-measure (max / mean / adaptive), MAE, and the precision-recall curve.

Each image is scored on its own (the toolbox's per-image statistics), so the per-image results of several processes
can simply be concatenated: :meth:`SODMetrics.state` gives them, :meth:`SODMetrics.merge` joins states, and
:meth:`SODMetrics.all_gather` does both across DDP ranks (``torch.distributed.all_gather_object``), after which every
rank computes the same means over every image exactly once.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import py_sod_metrics as psm

METRIC_KEYS = ("Sm", "wFm", "maxFm", "meanFm", "adpFm", "maxEm", "meanEm", "adpEm", "MAE")
# attribute lists of the py_sod_metrics evaluators that hold one entry per image
_STATE = {"sm": ("sms",), "wfm": ("weighted_fms",), "mae": ("maes",),
          "fm": ("precisions", "recalls", "adaptive_fms", "changeable_fms"), "em": ("adaptive_ems", "changeable_ems")}


def _new_fmeasure() -> psm.Fmeasure:
    with warnings.catch_warnings():  # Fmeasure announces FmeasureV2; its per-threshold P/R arrays are what we need
        warnings.simplefilter("ignore")
        return psm.Fmeasure()


class SODMetrics:
    """Accumulates per-image saliency metrics.

    ``update(pred, gt)``: ``pred`` float in [0, 1] (H, W), ``gt`` bool / {0, 1} (H, W) of the same size. Use the
    toolbox's own normalisation by passing uint8 maps with ``normalize=True`` instead.
    """

    def __init__(self) -> None:
        self.evaluators = {"sm": psm.Smeasure(), "wfm": psm.WeightedFmeasure(), "mae": psm.MAE(),
                           "fm": _new_fmeasure(), "em": psm.Emeasure()}

    def __len__(self) -> int:
        return len(self.evaluators["mae"].maes)

    def update(self, pred: np.ndarray, gt: np.ndarray, normalize: bool = False) -> None:
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size; resize the "
                             "prediction to the ground truth first.")
        if not normalize:
            pred = np.clip(np.asarray(pred, dtype=np.float64), 0.0, 1.0)
            gt = np.asarray(gt).astype(bool)
        for ev in self.evaluators.values():
            ev.step(pred, gt, normalize=normalize)

    def state(self) -> dict[str, list]:
        """The per-image results (picklable), for :meth:`merge`."""
        return {f"{k}.{a}": list(getattr(self.evaluators[k], a)) for k, attrs in _STATE.items() for a in attrs}

    def merge(self, states: list[dict[str, list]]) -> None:
        """Replace this accumulator's images with the concatenation of ``states`` (e.g. one per rank)."""
        for k, attrs in _STATE.items():
            for a in attrs:
                setattr(self.evaluators[k], a, [x for st in states for x in st[f"{k}.{a}"]])

    def all_gather(self) -> None:
        """Under DDP: gather every rank's per-image results so each rank holds all images (no-op otherwise)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, self.state())
            self.merge(states)

    def compute(self) -> dict[str, Any]:
        """Means over the images: :data:`METRIC_KEYS` (floats), ``num_images``, and 256-threshold ``curves``."""
        ev = self.evaluators
        fm, em = ev["fm"].get_results(), ev["em"].get_results()
        fm_curve, em_curve = np.asarray(fm["fm"]["curve"]), np.asarray(em["em"]["curve"])
        out = {
            "Sm": ev["sm"].get_results()["sm"], "wFm": ev["wfm"].get_results()["wfm"],
            "maxFm": fm_curve.max(), "meanFm": fm_curve.mean(), "adpFm": fm["fm"]["adp"],
            "maxEm": em_curve.max(), "meanEm": em_curve.mean(), "adpEm": em["em"]["adp"],
            "MAE": ev["mae"].get_results()["mae"],
        }
        out = {k: float(v) for k, v in out.items()}
        out["num_images"] = len(self)
        out["curves"] = {"precision": np.asarray(fm["pr"]["p"]).tolist(), "recall": np.asarray(fm["pr"]["r"]).tolist(),
                         "fm": fm_curve.tolist(), "em": em_curve.tolist()}
        return out


def write_sod_report(results: dict[str, dict], out_dir: str | Path) -> list[Path]:
    """``metrics.json`` (everything, curves included), ``metrics.md`` (the table) and ``pr_curve.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    head = ["dataset/split", "images", "S_α", "F_β^w", "maxF", "meanF", "adpF", "maxE", "meanE", "adpE", "MAE"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, r in results.items():
        lines.append(f"| {key} | {r['num_images']} | " + " | ".join(f"{r[k]:.3f}" for k in METRIC_KEYS) + " |")
    note = ("\nS_α: S-measure (α 0.5); F_β^w: weighted F-measure; F: F-measure (β² 0.3) over 256 thresholds (max, "
            "mean) and at the adaptive threshold; E: E-measure likewise; MAE on the min-max normalised map. Computed "
            "with py_sod_metrics at the ground-truth resolution.\n")
    (out_dir / "metrics.md").write_text("\n".join(lines) + "\n" + note)
    return [out_dir / "metrics.json", out_dir / "metrics.md", plot_pr_curves(results, out_dir / "pr_curve.png")]


def plot_pr_curves(results: dict[str, dict], out_png: str | Path) -> Path:
    """Precision against recall over the 256 thresholds, one line per dataset/split."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key, r in results.items():
        c = r["curves"]
        ax.plot(c["recall"], c["precision"], label=f"{key} (maxF {r['maxFm']:.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("precision-recall")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return Path(out_png)
