"""Every training method on the synthetic day / night segmentation scenes, same step budget, several seeds.

Data: ``ivtune.data.synthetic`` scenes (half day, half night: at night only the thermal image shows people, cars
and bikes). Backbone: DINOv2-S (``vit_small_patch14_dinov2``) from ``--weights`` / ``$IVTUNE_WEIGHTS`` when given,
else a random-init small ViT (the table says which; with a random-init backbone the frozen-backbone methods learn
little). Each (method, seed) is one ``ivtune.engine.run.train`` run and one ``evaluate`` on the test split; the
report gives mIoU overall / day / night as mean and standard deviation over seeds, a markdown table and a bar chart.

    python benchmarks/synthetic.py --weights /path/to/dinov2_vits14.safetensors      # full: 3 seeds, 300 steps
    python benchmarks/synthetic.py --quick --smoke --out /tmp/syn                      # tiny, 2 steps, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from machine_info import describe, machine

ALL_METHODS = ["iv-tuning", "frozen", "vpt", "adaptformer", "lora", "vis-only-full", "full", "dual-branch"]
SMOKE_METHODS = ["iv-tuning", "lora", "dual-branch"]
SPLITS = ("all", "day", "night")


SMOKE_CHOICE = {"name": "vit_small_patch16_224", "weights": None, "size": (64, 96),
                "timm_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2}, "label": "tiny random-init ViT (smoke)"}


def bench_parser(doc: str, out: str, smoke: str, methods: list[str]) -> argparse.ArgumentParser:
    """The options of every synthetic-scene benchmark (this one, ``feature_rank.py``): smoke, out, weights, methods."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help=smoke)
    p.add_argument("--out", default=out, help="output folder (data, runs, report)")
    p.add_argument("--weights", default=None, help="DINOv2-S (vit_small_patch14_dinov2) weights file")
    p.add_argument("--methods", nargs="*", default=None, help=f"subset of {methods}")
    return p


def write_scenes(data_root: Path, size: tuple[int, int], n_train: int, n_test: int) -> None:
    """The train / test scenes (seed 0, half of them at night) under ``data_root``, unless they are there already
    (parallel workers share one folder)."""
    from ivtune.data.scenes import write_synthetic_dataset

    if not (data_root / "synthetic.json").is_file():
        h, w = size
        write_synthetic_dataset(data_root, {"train": n_train, "test": n_test}, seed=0, height=h, width=w,
                                night_fraction=0.5)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def backbone_choice(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        return dict(SMOKE_CHOICE)
    weights = args.weights or os.environ.get("IVTUNE_WEIGHTS")
    if weights:
        return {"name": "vit_small_patch14_dinov2", "weights": str(weights), "size": (168, 224), "timm_kwargs": {},
                "label": f"pretrained DINOv2 ViT-S/14 ({Path(weights).name})"}
    return {"name": "vit_small_patch16_224", "weights": None, "size": (160, 224),
            "timm_kwargs": {"depth": 6, "embed_dim": 192, "num_heads": 3},
            "label": "random-init ViT (6 blocks, width 192): pass --weights for the pretrained comparison"}


def lr_for(method: str) -> float:
    """Methods that train the pretrained weights get a smaller rate (a common fine-tuning choice)."""
    from ivtune.methods import get_method

    return 1e-4 if get_method(method).trains_backbone else 5e-4


def run_config(choice: dict[str, Any], method: str, seed: int, data_root: Path, out: Path, steps: int,
               batch: int) -> Any:
    import ivtune.tasks  # noqa: F401  (registers the task config sections)
    from ivtune.config import config_from_dict
    from ivtune.data.scenes import SYNTHETIC_PALETTE

    h, w = choice["size"]
    return config_from_dict({
        "task": "seg",
        "model": {"backbone": choice["name"], "method": method, "pretrained": False, "weights": choice["weights"],
                  "timm_kwargs": choice["timm_kwargs"], "head": "segformer", "head_kwargs": {"embed_dim": 128}},
        "data": {"dataset": "folders", "root": str(data_root), "train_split": "train", "val_split": None,
                 "test_split": "test", "palette": [list(c) for c in SYNTHETIC_PALETTE],
                 "crop_size": [h, w], "scale_range": [0.75, 1.5], "batch_size": batch, "eval_batch_size": batch,
                 "num_workers": 0},
        "optim": {"lr": lr_for(method), "warmup_iters": max(1, steps // 10)},
        "train": {"max_steps": steps, "val_every": steps, "checkpoint_every": steps, "log_every": min(5, steps),
                  "accelerator": "auto", "output_dir": str(out), "run_name": f"{method}_seed{seed}", "seed": seed,
                  "progress_bar": False},
    }, source=f"<synthetic benchmark {method} seed {seed}>")


def summarise(results: dict[str, list[dict]]) -> dict[str, dict[str, dict[str, float]]]:
    out = {}
    for method, runs in results.items():
        out[method] = {}
        for split in SPLITS:
            vals = [r[split]["miou"] for r in runs]
            out[method][split] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1
                                  else 0.0, "n": len(vals)}
    return out


def bar_chart(summary: dict, path: Path, title: str) -> None:
    import numpy as np

    plt = pyplot()

    methods = list(summary)
    x = np.arange(len(methods))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(methods)), 4.0))
    for k, split in enumerate(SPLITS):
        means = [summary[m][split]["mean"] for m in methods]
        stds = [summary[m][split]["std"] for m in methods]
        ax.bar(x + (k - 1) * 0.27, means, 0.27, yerr=stds, capsize=3, label=split)
    ax.set_xticks(x, methods, rotation=20)
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "runs/bench_synthetic", "tiny backbone, 2 steps, 1 seed, 3 methods: seconds",
                     ALL_METHODS)
    p.add_argument("--quick", action="store_true", help="100 steps, 1 seed, fewer scenes")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; quick / smoke 1)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default 300; quick 100)")
    p.add_argument("--prepare-only", action="store_true",
                   help="write the scenes and stop (before starting parallel workers on one --out)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: report the runs already finished under --out (e.g. by parallel workers)")
    args = p.parse_args(argv)

    import torch

    from ivtune.runner.run import evaluate, train

    if args.smoke:
        torch.set_num_threads(1)
    steps = args.steps or (2 if args.smoke else 100 if args.quick else 300)
    seeds = list(range(args.seeds or (1 if args.smoke or args.quick else 3)))
    methods = args.methods or (SMOKE_METHODS if args.smoke else ALL_METHODS)
    n_train, n_test, batch = (8, 4, 2) if args.smoke else (128, 48, 8) if args.quick else (256, 96, 8)
    choice = backbone_choice(args)
    out = Path(args.out)
    data_root = out / "data"
    write_scenes(data_root, choice["size"], n_train, n_test)
    if args.prepare_only:
        print(f"scenes written to {data_root}")
        return 0

    results: dict[str, list[dict]] = {}
    for method in methods:
        for seed in seeds:
            t = time.perf_counter()
            cfg = run_config(choice, method, seed, data_root, out / "runs", steps, batch)
            run_dir = out / "runs" / f"{method}_seed{seed}"
            cached = run_dir / "benchmark_eval.json"  # finished runs (e.g. from parallel workers) are not redone
            if cached.is_file():
                res = json.loads(cached.read_text())
            elif args.report_only:
                print(f"{method:<14} seed {seed}: not finished under {run_dir}, left out of the report")
                continue
            else:
                if not (run_dir / "checkpoints" / "model.safetensors").is_file():
                    train(cfg)
                torch.manual_seed(seed)  # a random-init frozen backbone is rebuilt from the seed used in training
                report = evaluate(run_dir)
                res = {s: {"miou": report[s]["miou"]} for s in SPLITS}
                cached.write_text(json.dumps(res) + "\n")
            results.setdefault(method, []).append(res)
            print(f"{method:<14} seed {seed}: mIoU all {res['all']['miou']:.1f} day {res['day']['miou']:.1f} "
                  f"night {res['night']['miou']:.1f} ({time.perf_counter() - t:.0f} s)", flush=True)

    summary = summarise(results)
    mach = machine()
    lines = [
        "# Synthetic day / night segmentation: methods at the same step budget", "",
        f"- Backbone: {choice['label']}; input {choice['size'][0]}x{choice['size'][1]}, batch {batch}.",
        f"- Budget: {steps} steps per run, AdamW, lr 5e-4 (1e-4 for methods that train the backbone), head x10; "
        f"seeds {seeds}; {n_train} train / {n_test} test scenes.",
        f"- Machine: {describe(mach)}.", "",
        "| method | mIoU all | mIoU day | mIoU night |", "|---|---:|---:|---:|",
    ]
    for method, s in summary.items():
        runs = "" if s["all"]["n"] == len(seeds) else f" ({s['all']['n']} of {len(seeds)} seeds)"
        lines.append(f"| {method}{runs} | " + " | ".join(f"{s[k]['mean']:.1f} ± {s[k]['std']:.1f}" for k in SPLITS)
                     + " |")
    lines += ["", "mean ± standard deviation over seeds (0 with one seed).", "", "![mIoU](synthetic_miou.png)", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "synthetic.md").write_text("\n".join(lines))
    payload = {"backbone": choice["label"], "steps": steps, "seeds": seeds, "machine": mach, "runs": results,
               "summary": summary}
    (out / "synthetic.json").write_text(json.dumps(payload, indent=2) + "\n")
    bar_chart(summary, out / "synthetic_miou.png", f"synthetic scenes, {steps} steps, {len(seeds)} seed(s)")
    print(f"wrote {out / 'synthetic.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
