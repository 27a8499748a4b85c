"""Feature rank per block after training: does full fine-tuning collapse the deep features, as the paper argues?

The runs of ``benchmarks/synthetic.py`` (synthetic day / night segmentation scenes, SegFormer head, the same
step budget for every method; configs built by its ``run_config``) for ``iv-tuning``, ``full``, ``vis-only-full``,
``dual-branch`` and ``frozen`` on DINOv2-S (``vit_small_patch14_dinov2``, the offline weights from ``--weights`` /
``$IVTUNE_WEIGHTS``), then ``ivtune analyze --all-blocks`` on the test scenes: the effective rank of every block's
patch tokens for each method and for the frozen pretrained backbone (the reference), and the components needed
for 90 % / 99 % of the variance at the last block. Writes ``feature_rank.md`` / ``.json`` / ``.png`` in ``--out``.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/feature_rank.py --weights PATH/dinov2_vits14.safetensors
    python benchmarks/feature_rank.py --smoke --out /tmp/fr                                      # tiny, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from machine_info import describe, machine
from synthetic import SMOKE_CHOICE, bench_parser, pyplot, run_config, save_figure, write_scenes

METHODS = ["iv-tuning", "frozen", "full", "vis-only-full", "dual-branch"]


def backbone_choice(args: argparse.Namespace) -> dict[str, Any]:
    if args.smoke:
        return dict(SMOKE_CHOICE)
    weights = args.weights or os.environ.get("IVTUNE_WEIGHTS")
    if not weights:
        raise SystemExit("pass --weights (DINOv2-S, vit_small_patch14_dinov2) or set IVTUNE_WEIGHTS; --smoke runs "
                         "without weights")
    h, w = args.size
    return {"name": "vit_small_patch14_dinov2", "weights": str(weights), "size": (h, w), "timm_kwargs": {},
            "label": f"pretrained DINOv2 ViT-S/14 ({Path(weights).name})"}


def train_runs(choice: dict[str, Any], methods: list[str], data_root: Path, runs_dir: Path, steps: int, batch: int,
               seed: int) -> dict[str, dict[str, Any]]:
    """Train (or reuse) one run per method; mIoU on the test scenes for context."""
    import torch

    from ivtune.runner.run import evaluate, train

    out = {}
    for method in methods:
        t = time.perf_counter()
        run_dir = runs_dir / f"{method}_seed{seed}"
        cached = run_dir / "benchmark_eval.json"
        if cached.is_file():
            res = json.loads(cached.read_text())
        else:
            if not (run_dir / "checkpoints" / "model.safetensors").is_file():
                train(run_config(choice, method, seed, data_root, runs_dir, steps, batch))
            torch.manual_seed(seed)
            report = evaluate(run_dir)
            res = {"miou": {s: report[s]["miou"] for s in ("all", "day", "night") if s in report},
                   "seconds": time.perf_counter() - t}
            cached.write_text(json.dumps(res) + "\n")
        out[method] = {"run_dir": run_dir, **res}
        print(f"{method:<14} mIoU {res['miou']['all']:.1f} ({res['seconds']:.0f} s to train + evaluate)", flush=True)
    return out


def untrained_spectra(trained: dict[str, dict[str, Any]], options: Any) -> dict[str, list[dict[str, Any]]]:
    """The spectra of the networks as initialised (before step 1), for the methods with the IR entry: what
    training changed, apart from what the IR prompt already does to the tokens."""
    from ivtune.runner.analyze import backbone_spectra
    from ivtune.runner.run import DATASET_INFO, build_module_seeded, resolve
    from ivtune.tasks import get_task

    out = {}
    for method in ("iv-tuning", "frozen"):  # full starts as iv-tuning does (same network, same seed)
        if method not in trained:
            continue
        cfg, run_dir = resolve(trained[method]["run_dir"])
        task = get_task(cfg.task)
        module = build_module_seeded(task, cfg, json.loads((run_dir / DATASET_INFO).read_text())).eval()
        backbone = module.model.backbone
        out[method] = backbone_spectra(backbone, task.build_dataset(cfg, "test", train=False),
                                       backbone.input_multiple, options)
    return out


def figure(result: dict[str, Any], untrained: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import numpy as np

    plt = pyplot()

    entries = result["runs"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [blk["block"].replace("blocks.", "") for blk in entries[0]["blocks"]]
    x = np.arange(len(labels))
    for e in entries:
        a.plot(x, [blk["effective_rank"] for blk in e["blocks"]], "-o", markersize=3, label=e["method"])
        s = np.asarray(e["blocks"][-1]["singular_values"]) ** 2
        b.plot(np.arange(1, len(s) + 1), np.cumsum(s) / s.sum(), label=e["method"])
    for method, rows in untrained.items():
        colour = "tab:orange" if method == "frozen" else "tab:blue"  # the trained run's colour, dotted
        a.plot(x, [blk["effective_rank"] for blk in rows], ":", color=colour, label=f"{method} network at step 0")
    ref = entries[0]["reference"]["blocks"]
    ref_label = f"reference ({entries[0]['reference']['label']}, VIS)"
    a.plot(x, [blk["effective_rank"] for blk in ref], "k--o", markersize=3, label=ref_label)
    s = np.asarray(ref[-1]["singular_values"]) ** 2
    b.plot(np.arange(1, len(s) + 1), np.cumsum(s) / s.sum(), "k--", label=ref_label)
    a.set_xticks(x, labels)
    a.set_xlabel("block")
    a.set_ylabel("effective rank of the patch tokens")
    a.set_ylim(bottom=0)
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    b.set_xscale("log")
    b.set_xlabel(f"principal components (block {entries[0]['blocks'][-1]['block']})")
    b.set_ylabel("cumulative explained variance")
    for share in (0.9, 0.99):
        b.axhline(share, color="grey", linewidth=0.8, linestyle=":")
    b.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=120)


def maps_figure(result: dict[str, Any], path: Path) -> None:
    """The maps panels (VIS | IR | PCA | PCA of the reference | Grad-CAM) of one day and one night scene, a row
    per method."""
    import numpy as np
    from PIL import Image

    plt = pyplot()

    entries = [e for e in result["runs"] if e.get("maps")]
    if not entries:
        return
    picks = [next((m for m in entries[0]["maps"] if m["image"].endswith(c)), None) for c in ("D", "N")]
    picks = [m for m in picks if m is not None]
    fig, axes = plt.subplots(len(entries), len(picks), figsize=(6.5 * len(picks), 1.5 * len(entries) + 0.6),
                             squeeze=False)
    for r, e in enumerate(entries):
        folder = Path(e["run"]) / "analysis" / e["split"] / "maps"
        for c, pick in enumerate(picks):
            ax = axes[r][c]
            ax.imshow(np.asarray(Image.open(folder / pick["files"]["panel"])))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(e["method"], fontsize=9)
            if r == 0:
                ax.set_title(f"{pick['image']}: VIS | IR | PCA | PCA pretrained | Grad-CAM", fontsize=9)
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, "runs/bench_feature_rank", "tiny random-init backbone, 2 steps: seconds", METHODS)
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per run (the same for every method)")
    p.add_argument("--batch", type=int, default=4, help="batch size")
    p.add_argument("--size", type=int, nargs=2, default=(84, 112), metavar=("H", "W"),
                   help="scene size = training crop (multiples of 14)")
    p.add_argument("--train-scenes", type=int, default=96)
    p.add_argument("--test-scenes", type=int, default=32)
    # on a loaded shared machine one intra-op thread was ~30x faster per step than two (OpenMP barrier stalls)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args(argv)

    import torch

    from ivtune.runner.analyze import AnalysisOptions, analyze

    torch.set_num_threads(args.threads)
    choice = backbone_choice(args)
    steps = 2 if args.smoke else args.steps
    n_train, n_test = (8, 4) if args.smoke else (args.train_scenes, args.test_scenes)
    methods = args.methods or METHODS
    out = Path(args.out)
    data_root = out / "data"
    write_scenes(data_root, choice["size"], n_train, n_test)
    trained = train_runs(choice, methods, data_root, out / "runs", steps, args.batch, seed=0)
    t_train = sum(trained[m]["seconds"] for m in methods)  # as measured when each run was trained
    # maps of the first 4 test scenes (2 day, 2 night), Grad-CAM for one class so that the methods compare
    options = AnalysisOptions(split="test", max_images=n_test, tokens_per_image=0, all_blocks=True, maps=True,
                              maps_images=4, cam_class="person")
    t1 = time.perf_counter()
    result = analyze([trained[m]["run_dir"] for m in methods], options, out=out / "analysis")
    untrained = untrained_spectra(trained, options)
    t_analyse = time.perf_counter() - t1

    mach = machine()
    entries = result["runs"]
    h, w = choice["size"]
    blocks = [blk["block"] for blk in entries[0]["blocks"]]
    ref = entries[0]["reference"]["blocks"]
    ref_label = f"reference ({entries[0]['reference']['label']}, VIS)"
    lines = [
        "# Feature rank per block after training (synthetic day / night segmentation)", "",
        f"- Backbone: {choice['label']}; scenes {h}x{w} ({entries[0]['blocks'][0]['grid'][0]}x"
        f"{entries[0]['blocks'][0]['grid'][1]} tokens), {n_train} train / {n_test} test, half at night.",
        f"- Budget, the same for every method: {steps} steps, batch {args.batch}, AdamW, lr 5e-4 (1e-4 for the methods "
        "that train the backbone weights), head x10, seed 0, SegFormer head (`benchmarks/synthetic.py` configs).",
        f"- Analysis: `ivtune analyze --all-blocks --tokens-per-image 0` on the {entries[0]['images']} test scenes: "
        f"every patch token, {entries[0]['blocks'][-1]['tokens']} per block; the reference is the frozen pretrained "
        "backbone on the visible image.",
        f"- Machine: {describe(mach)}; shared with other jobs (load average {os.getloadavg()[0]:.1f} at the end), "
        f"run under `nice -n 10`: training + evaluation {t_train / 60:.0f} min, analysis {t_analyse:.0f} s.", "",
        "Effective rank of the patch tokens per block (exp of the entropy of the normalised singular values):", "",
        "| method | mIoU all / day / night | " + " | ".join(b.replace("blocks.", "") for b in blocks) + " |",
        "|---|---|" + "---:|" * len(blocks),
        f"| {ref_label} | | " + " | ".join(f"{b['effective_rank']:.1f}" for b in ref) + " |",
    ]
    names = {"iv-tuning": "IV-tuning network at step 0 (also full's start)", "frozen": "frozen network at step 0"}
    for method, rows in untrained.items():
        lines.append(f"| {names[method]} | | " + " | ".join(f"{b['effective_rank']:.1f}" for b in rows) + " |")
    for e in entries:
        miou = trained[e["method"]]["miou"]
        lines.append(f"| {e['method']} | {miou['all']:.1f} / {miou.get('day', float('nan')):.1f} / "
                     f"{miou.get('night', float('nan')):.1f} | "
                     + " | ".join(f"{b['effective_rank']:.1f}" for b in e["blocks"]) + " |")
    lines += ["", f"At the last block ({blocks[-1]}):", "",
              "| | effective rank | components for 90 % | components for 99 % |", "|---|---:|---:|---:|",
              f"| {ref_label} | {ref[-1]['effective_rank']:.1f} | {ref[-1]['components_90']} | "
              f"{ref[-1]['components_99']} |"]
    lines += [f"| {names[m]} | {rows[-1]['effective_rank']:.1f} | {rows[-1]['components_90']} | "
              f"{rows[-1]['components_99']} |" for m, rows in untrained.items()]
    lines += [f"| {e['method']} | {e['blocks'][-1]['effective_rank']:.1f} | {e['blocks'][-1]['components_90']} | "
              f"{e['blocks'][-1]['components_99']} |" for e in entries]
    lines += ["", "![feature rank](feature_rank.png)", "",
              "Grad-CAM for the class `person` at the last block; PCA colours of the last block's tokens:", "",
              "![maps](feature_rank_maps.png)", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "feature_rank.md").write_text("\n".join(lines))
    payload = {"backbone": choice["label"], "size": [h, w], "steps": steps, "batch": args.batch, "machine": mach,
               "train_seconds": t_train, "analysis_seconds": t_analyse,
               "miou": {m: trained[m]["miou"] for m in methods},
               "effective_rank": {"pretrained": [b["effective_rank"] for b in ref],
                                  **{f"{m} (step 0)": [b["effective_rank"] for b in rows]
                                     for m, rows in untrained.items()},
                                  **{e["method"]: [b["effective_rank"] for b in e["blocks"]] for e in entries}},
               "blocks": blocks}
    (out / "feature_rank.json").write_text(json.dumps(payload, indent=2) + "\n")
    figure(result, untrained, out / "feature_rank.png", f"{choice['label']}, {steps} steps, {n_test} test scenes")
    maps_figure(result, out / "feature_rank_maps.png")
    print(f"wrote {out / 'feature_rank.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
