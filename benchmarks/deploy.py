"""Deployment latency: ``ivtune.Predictor`` in torch (eager fp32, optionally ``torch.compile``) vs onnxruntime CPU.

One pair per call (batch 1) at 480x640, Swin-T and ViT-S per task, end to end (preprocessing, graph,
post-processing: what ``Predictor.predict`` costs a caller); the median of ``--repeats`` timed calls after
``--warmup`` calls. Backbones are random-init (latency does not depend on the weights; nothing is downloaded):
segmentation SegFormer head, SOD CPNet decoder (``data.size`` 480x640), detection FCOS (short side 480, long side
640). onnxruntime gets the same thread count as torch. "torch compiled" is ``IVBackbone.compile()`` (regional:
every backbone block through ``torch.compile``, the rest eager; ``--no-compile`` skips it). Writes
``benchmarks/results/deploy_<tasks>_<machine>.{json,md}``::

    nice -n 10 python benchmarks/deploy.py --tasks seg --repeats 5
    python benchmarks/deploy.py --smoke     # every task and backbone at 128x160, 1 call: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine_info import machine, machine_tag

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {"seg": "configs/seg/synthetic_tiny.yaml", "sod": "configs/sod/synthetic_tiny.yaml",
           "det": "configs/det/synthetic_tiny_fcos.yaml"}
BACKBONES = {"ViT-S": "vit_small_patch16_224", "Swin-T": "swin_tiny_patch4_window7_224"}
SIZE = (480, 640)
SMOKE_SIZE = (128, 160)  # --smoke: multiples of every pad multiple (16, 32); times mean nothing at this size
INFO = {"classes": [f"c{i}" for i in range(9)], "palette": [[i * 20, i * 20, i * 20] for i in range(9)],
        "ignore_index": 255}


def build(task: str, backbone: str, size: tuple[int, int] = SIZE):
    from ivtune.runner import load_config
    from ivtune.runner.run import build_module_seeded
    from ivtune.tasks import get_task

    overrides = [f"model.backbone={backbone}", "model.timm_kwargs={}", "model.head_kwargs={}"]
    overrides += {"seg": [], "sod": [f"data.size=[{size[0]}, {size[1]}]"],
                  "det": [f"data.test_size={size[0]}", f"data.max_size={size[1]}"]}[task]
    cfg = load_config(REPO / CONFIGS[task], overrides)
    return build_module_seeded(get_task(task), cfg, INFO).eval()


def latency(predictor, vis: np.ndarray, ir: np.ndarray, warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        predictor.predict(vis, ir)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.predict(vis, ir)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times), "repeats": repeats}


def run_cell(task: str, name: str, backbone: str, args, out: dict) -> None:
    from ivtune.backbones.base import IVBackbone
    from ivtune.runner.export import export_module
    from ivtune.runner.predictor import Predictor

    size = tuple(args.size)
    rng = np.random.default_rng(0)
    vis = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, size, dtype=np.uint8)
    module = build(task, backbone, size)
    eager = Predictor.from_module(module)
    cell = {"task": task, "backbone": name, "timm": backbone,
            "eager": latency(eager, vis, ir, args.warmup, args.repeats)}
    if args.compile:
        try:
            # a second, identically seeded model: compile() changes its backbones in place
            twin = build(task, backbone, size)
            for m in twin.modules():
                if isinstance(m, IVBackbone):
                    m.compile(cuda_graphs=False)
            compiled = Predictor.from_module(twin)
            start = time.perf_counter()
            first = compiled.predict(vis, ir)  # compiles every block variant
            cell["compile_s"] = time.perf_counter() - start
            cell["compiled_matches_eager"] = same_prediction(first, eager.predict(vis, ir))
            cell["compiled"] = latency(compiled, vis, ir, args.warmup, args.repeats)
        except Exception as exc:  # inductor needs a C++ toolchain; report why instead of failing the table
            cell["compiled"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report = export_module(module, Path(tmp) / "m.onnx", size=size)
        cell["export_s"] = time.perf_counter() - start
        cell["parity"] = {c["what"]: c["max_abs_diff"] for c in report.checks}
        onnx_p = Predictor.from_onnx(Path(tmp) / "m.onnx", threads=torch.get_num_threads())
        cell["onnxruntime"] = latency(onnx_p, vis, ir, args.warmup, args.repeats)
    cell["ort_over_eager"] = cell["onnxruntime"]["median_ms"] / cell["eager"]["median_ms"]
    out["cells"].append(cell)
    print(json.dumps(cell), flush=True)


def same_prediction(a, b) -> bool:
    """Whether two predictions agree (masks / labels equal; saliency, boxes, scores within 1e-3)."""
    fields = {k: v for k, v in vars(a).items() if isinstance(v, np.ndarray)}
    for key, x in fields.items():
        y = getattr(b, key)
        if x.shape != y.shape:
            return False
        if np.issubdtype(x.dtype, np.floating):
            if x.size and float(np.abs(x - y).max()) > 1e-3:
                return False
        elif not np.array_equal(x, y):
            return False
    return True


def markdown(result: dict) -> str:
    m = result["machine"]
    h, w = result["size"]
    lines = [f"# Deploy latency, batch 1, {h}x{w} (median of {result['repeats']} calls)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
             f"onnxruntime {result['onnxruntime']}. {result['note']}", "",
             "| task | backbone | torch eager fp32 (ms) | torch compiled (ms) | onnxruntime CPU (ms) | ORT / eager |",
             "|---|---|---:|---:|---:|---:|"]
    for c in result["cells"]:
        comp = c.get("compiled", {})
        comp_s = f"{comp['median_ms']:.0f}" if "median_ms" in comp else ("not run" if not comp else "failed")
        lines.append(f"| {c['task']} | {c['backbone']} | {c['eager']['median_ms']:.0f} | {comp_s} | "
                     f"{c['onnxruntime']['median_ms']:.0f} | {c['ort_over_eager']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                    help="also time IVBackbone.compile() (regional torch.compile of the backbone blocks)")
    ap.add_argument("--size", nargs=2, type=int, default=list(SIZE), metavar=("H", "W"))
    ap.add_argument("--smoke", action="store_true",
                    help=f"check the script end to end: --size {SMOKE_SIZE[0]} {SMOKE_SIZE[1]}, 1 call, no warmup")
    ap.add_argument("--note", default="", help="load / conditions to state in the report")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.repeats, args.warmup = list(SMOKE_SIZE), 1, 0
    import onnxruntime

    import ivtune.tasks  # noqa: F401  (registers the tasks)

    result = {"machine": machine("cpu"), "onnxruntime": onnxruntime.__version__, "size": list(args.size),
              "repeats": args.repeats, "warmup": args.warmup, "note": args.note, "cells": []}
    for task in args.tasks:
        for name in args.backbones:
            run_cell(task, name, BACKBONES[name], args, result)
    args.out.mkdir(parents=True, exist_ok=True)
    smoke = "_smoke" if args.smoke else ""
    stem = args.out / f"deploy_{'-'.join(args.tasks)}{smoke}_{machine_tag(result['machine'])}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
