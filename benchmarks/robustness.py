"""Sensor-fault robustness on the synthetic day / night segmentation scenes: methods at the same budget, the suite.

Methods: ``iv-tuning``, ``iv-tuning`` with ``train.modality_dropout: 0.3``, ``vis-only-full`` and ``dual-branch``,
each trained for the same steps and batch on the same scenes (``benchmarks/synthetic.py`` builds the configs), then
scored by ``ivtune eval RUN --degrade-suite`` (:data:`ivtune.data.degrade.DEGRADE_SUITE`, docs/METHOD.md section
14). Backbone: DINOv2-S (``vit_small_patch14_dinov2``) from ``--weights`` / ``$IVTUNE_WEIGHTS``. The report gives
every method's mIoU (overall / day / night) clean and under each fault with the drop, checks the two targets of the
robustness issue, and writes a markdown table, a chart and the results JSON (machine and load stated).

    python benchmarks/robustness.py --weights /work/shared/weights/dinov2_vits14_imgfocus.safetensors
    python benchmarks/robustness.py --smoke --out /tmp/rob      # tiny random-init ViT, 2 steps: a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from machine_info import describe, machine, machine_tag
from synthetic import lr_for, run_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = "/work/shared/weights/dinov2_vits14_imgfocus.safetensors"
# (label, method, extra --set overrides)
METHODS = (
    ("iv-tuning", "iv-tuning", ()),
    ("iv-tuning + dropout 0.3", "iv-tuning", ("train.modality_dropout=0.3",)),
    ("vis-only-full", "vis-only-full", ()),
    ("dual-branch", "dual-branch", ()),
)
ROWS = ("all", "day", "night")


def run_name(label: str, seed: int) -> str:
    return label.replace(" + dropout ", "-md").replace(" ", "") + f"_seed{seed}"


def backbone(args: argparse.Namespace) -> dict[str, Any]:
    h, w = args.size
    if args.smoke:
        return {"name": "vit_small_patch16_224", "weights": None, "size": (64, 96),
                "timm_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2}, "label": "tiny random-init ViT (smoke)"}
    weights = args.weights or os.environ.get("IVTUNE_WEIGHTS") or DEFAULT_WEIGHTS
    if not Path(weights).is_file():
        raise SystemExit(f"DINOv2-S weights not found at {weights}: pass --weights or set IVTUNE_WEIGHTS.")
    return {"name": "vit_small_patch14_dinov2", "weights": str(weights), "size": (h, w), "timm_kwargs": {},
            "label": f"pretrained DINOv2 ViT-S/14 ({Path(weights).name})"}


def miou(report: dict[str, Any], degradation: str, row: str) -> float | None:
    res = report["results"].get(degradation, {}).get(row, {})
    return res.get("miou")


def fmt(v: float | None, signed: bool = False) -> str:
    return "–" if v is None else (f"{v:+.1f}" if signed else f"{v:.1f}")


def cell(report: dict[str, Any], degradation: str, row: str) -> str:
    """``value (drop)``; drop = clean - value, positive = worse."""
    v, c = miou(report, degradation, row), miou(report, "clean", row)
    if degradation == "clean" or v is None or c is None:
        return fmt(v)
    return f"{fmt(v)} ({fmt(c - v, signed=True)})"


def targets(reports: dict[str, dict]) -> list[str]:
    """The two targets of the issue, checked; one markdown bullet each."""
    md, base, vis = (reports.get(k) for k in ("iv-tuning + dropout 0.3", "iv-tuning", "vis-only-full"))
    out = []
    if md and vis:
        gap = miou(vis, "clean", "day") - miou(md, "ir:missing", "day")
        out.append(f"- IV-tuning + dropout 0.3 with the IR image missing, day scenes: "
                   f"{fmt(miou(md, 'ir:missing', 'day'))} mIoU vs vis-only-full {fmt(miou(vis, 'clean', 'day'))} "
                   f"(clean; {fmt(miou(vis, 'ir:missing', 'day'))} with IR missing, which it never reads): gap "
                   f"{gap:.1f} points; target <= 5: **{'met' if gap <= 5 else f'missed by {gap - 5:.1f}'}**.")
    if md and base:
        gap = miou(base, "clean", "all") - miou(md, "clean", "all")
        out.append(f"- Clean mIoU with dropout {fmt(miou(md, 'clean', 'all'))} vs without "
                   f"{fmt(miou(base, 'clean', 'all'))}: {gap:+.1f} points lost; target <= 1: "
                   f"**{'met' if gap <= 1 else f'missed by {gap - 1:.1f}'}**.")
    return out


def chart(reports: dict[str, dict], degradations: list[str], path: Path, title: str) -> None:
    """Top: mIoU (all scenes) per degradation and method; bottom: clean / IR missing / VIS missing, day and night."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(reports)
    conds = ["clean", *degradations]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(min(14.0, max(9.0, 0.25 * len(conds) * len(methods))), 8.0))
    x, width = np.arange(len(conds)), 0.8 / len(methods)
    for j, m in enumerate(methods):
        vals = [miou(reports[m], c, "all") for c in conds]
        top.bar(x - 0.4 + width * (j + 0.5), [np.nan if v is None else v for v in vals], width, label=m)
    top.set_xticks(x, conds, rotation=30, ha="right", fontsize=8)
    top.set_ylabel("mIoU, all scenes (%)")
    top.set_title(title, fontsize=10)
    top.grid(True, axis="y", alpha=0.3)
    top.legend(fontsize=8, ncols=2)
    groups = [(c, r) for c in ("clean", "ir:missing", "vis:missing") for r in ("day", "night")]
    x2 = np.arange(len(groups))
    for j, m in enumerate(methods):
        vals = [miou(reports[m], c, r) for c, r in groups]
        bottom.bar(x2 - 0.4 + width * (j + 0.5), [np.nan if v is None else v for v in vals], width, label=m)
    bottom.set_xticks(x2, [f"{c}\n{r}" for c, r in groups], fontsize=8)
    bottom.set_ylabel("mIoU (%)")
    bottom.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(reports: dict[str, dict], degradations: list[str], meta: dict[str, Any], chart_name: str) -> str:
    from ivtune.data.degrade import SUITE_RATIONALE

    methods = list(reports)
    lines = [
        "# Sensor-fault robustness: synthetic day / night segmentation", "",
        f"- Backbone: {meta['backbone']}; input {meta['size'][0]}x{meta['size'][1]}, batch {meta['batch']}.",
        f"- Budget (every method): {meta['steps']} steps, AdamW, lr 5e-4 (1e-4 for methods that train the backbone), "
        f"head x10, seed {meta['seed']}; {meta['n_train']} train / {meta['n_test']} test scenes (half night).",
        f"- Evaluation: `ivtune eval RUN {meta['evaluation']}` ({len(degradations)} faults, docs/METHOD.md section "
        f"14), evaluation seed {meta['degrade_seed']}.",
        f"- Machine: {meta['machine_line']}. {meta['load_line']}", "",
        "## Missing modality", "",
        "mIoU (%), in parentheses the drop from clean (positive = worse).", "",
        "| method | clean all | clean day | clean night | IR missing all | IR missing day | IR missing night | "
        "VIS missing all | VIS missing day | VIS missing night |", "|---|" + "---:|" * 9,
    ]
    for m in methods:
        r = reports[m]
        lines.append(f"| {m} | " + " | ".join(cell(r, c, row) for c in ("clean", "ir:missing", "vis:missing")
                                                for row in ROWS) + " |")
    lines += ["", "## Targets", "", *targets(reports), "", "## The standard suite", "",
              "mIoU over all test scenes (%), drop from clean in parentheses.", "",
              "| degradation | fault | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
    for d in ["clean", *degradations]:
        why = "" if d == "clean" else SUITE_RATIONALE.get(d, "")
        lines.append(f"| `{d}` | {why} | " + " | ".join(cell(reports[m], d, "all") for m in methods) + " |")
    lines += ["", "Day and night rows of every fault: the results JSON, and each run's "
              "`eval/test/metrics.md`.", "", f"![robustness]({chart_name})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=None,
                   help=f"DINOv2-S weights (default $IVTUNE_WEIGHTS, else {DEFAULT_WEIGHTS})")
    p.add_argument("--out", default="runs/bench_robustness", help="output folder (scenes, runs)")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per run")
    p.add_argument("--batch", type=int, default=4, help="batch size")
    p.add_argument("--size", type=int, nargs=2, default=(112, 140), metavar=("H", "W"),
                   help="scene size; multiples of the patch size 14")
    p.add_argument("--train", type=int, default=128, help="training scenes")
    p.add_argument("--test", type=int, default=48, help="test scenes")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--degrade-seed", type=int, default=0, help="evaluation seed of the random faults")
    p.add_argument("--methods", nargs="*", default=None, help=f"subset of {[m for m, _, _ in METHODS]}")
    p.add_argument("--missing-only", action="store_true",
                   help="score only ir:missing and vis:missing (a longer-budget check of the two targets)")
    p.add_argument("--smoke", action="store_true", help="tiny random-init ViT, 2 steps, 8 / 4 scenes")
    p.add_argument("--docs", default=None, help="also write robustness.md + .png here (e.g. docs)")
    p.add_argument("--results", default=None, help="also write the JSON here (e.g. benchmarks/results)")
    args = p.parse_args(argv)

    from ivtune.data.scenes import write_synthetic_dataset
    from ivtune.runner.run import evaluate_robustness, train

    if args.smoke:
        args.steps, args.batch, args.train, args.test = 2, 2, 8, 4
    choice = backbone(args)
    out = Path(args.out)
    data_root = out / "data"
    if not (data_root / "synthetic.json").is_file():
        h, w = choice["size"]
        write_synthetic_dataset(data_root, {"train": args.train, "test": args.test}, seed=0, height=h, width=w,
                                night_fraction=0.5)
    wanted = [m for m in METHODS if args.methods is None or m[0] in args.methods]
    reports: dict[str, dict] = {}
    timings: dict[str, dict[str, float]] = {}
    loads = [os.getloadavg()]
    for label, method, extra in wanted:
        name = run_name(label, args.seed)
        run_dir = out / "runs" / name
        cached = run_dir / "robustness.json"
        if cached.is_file():  # finished runs are not redone
            saved = json.loads(cached.read_text())
            reports[label], timings[label] = saved["report"], saved["seconds"]
            loads.append(tuple(saved.get("load_after", (float("nan"),) * 3)))
            print(f"{label:<24} cached", flush=True)
            continue
        cfg = run_config(choice, method, args.seed, data_root, out / "runs", args.steps, args.batch)
        t0 = time.perf_counter()
        if not (run_dir / "checkpoints" / "model.safetensors").is_file():
            train(cfg, [f"train.run_name={name}", *extra])
        t1 = time.perf_counter()
        if args.missing_only:
            report = evaluate_robustness(run_dir, ["ir:missing", "vis:missing"], seed=args.degrade_seed).to_dict()
        else:
            report = evaluate_robustness(run_dir, suite=True, seed=args.degrade_seed).to_dict()
        t2 = time.perf_counter()
        loads.append(os.getloadavg())
        reports[label], timings[label] = report, {"train": t1 - t0, "eval": t2 - t1}
        cached.write_text(json.dumps({"report": report, "seconds": timings[label], "load_after": loads[-1]}) + "\n")
        print(f"{label:<24} clean {fmt(miou(report, 'clean', 'all'))}  IR missing "
              f"{fmt(miou(report, 'ir:missing', 'all'))}  VIS missing {fmt(miou(report, 'vis:missing', 'all'))}  "
              f"(train {t1 - t0:.0f} s, eval {t2 - t1:.0f} s)", flush=True)

    degradations = max((r["degradations"] for r in reports.values()), key=len, default=[])
    mach = machine("cpu")
    load_line = ("1-minute load average " + ", ".join(f"{a:.1f}" for a, _, _ in loads) +
                 " (now, then after each method): a shared machine, timings are indicative only. "
                 + "Wall time per method: " + "; ".join(f"{m} train {t['train']:.0f} s, eval {t['eval']:.0f} s"
                                                      for m, t in timings.items()) + ".")
    meta = {"backbone": choice["label"], "size": list(choice["size"]), "batch": args.batch, "steps": args.steps,
            "seed": args.seed, "degrade_seed": args.degrade_seed,
            "evaluation": "--degrade ir:missing --degrade vis:missing" if args.missing_only else "--degrade-suite",
            "n_train": args.train, "n_test": args.test,
            "lr": {m: lr_for(method) for m, method, _ in wanted}, "machine": mach, "machine_line": describe(mach),
            "load_line": load_line, "load_averages": loads, "seconds": timings}
    kind = "smoke_" if args.smoke else "missing_" if args.missing_only else ""
    tag = f"robustness_{args.steps}steps_{kind}{machine_tag(mach)}"
    chart_name = f"{tag}.png"
    md = markdown(reports, degradations, meta, chart_name)
    payload = {**meta, "methods": {m: {"method": method, "overrides": list(extra)} for m, method, extra in wanted},
               "reports": reports}
    out.mkdir(parents=True, exist_ok=True)
    targets_dirs = [out] + [Path(d) for d in (args.docs,) if d]
    for d in targets_dirs:
        d.mkdir(parents=True, exist_ok=True)
        name = "robustness" if d != out else tag
        (d / f"{name}.md").write_text(md.replace(f"]({chart_name})", f"]({name}.png)"))
        chart(reports, degradations, d / f"{name}.png",
              f"synthetic scenes, {choice['label']}, {args.steps} steps x batch {args.batch}")
    for d in [out] + [Path(d) for d in (args.results,) if d]:
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{tag}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
