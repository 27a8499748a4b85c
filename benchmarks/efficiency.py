"""Efficiency of every training method: trainable parameters, train-step time, peak memory, inference latency.

For each method on Swin-T (``swin_tiny_patch4_window7_224``, ``img_size=(480, 640)``) and ViT-S
(``vit_small_patch16_224``, dynamic size) at 480x640, batch 2:

- trainable parameters of the backbone (as ``ivtune params`` counts them);
- train step: forward + backward + AdamW step of the backbone with a small SegFormer head (``embed_dim`` 128,
  9 classes, cross-entropy on a random mask), in train mode; median over repeats after warm-up;
- peak memory of that training: CUDA ``max_memory_allocated`` on a GPU; on a CPU the rise of the process's
  maximum resident set size (``getrusage``) from before the model is built, each method in a fresh subprocess
  (weights, gradients, optimiser state and activations all count);
- inference latency: the backbone's ``forward(vis, ir)`` under ``no_grad`` in eval mode (no head), median;
- the floor: the plain single-modal timm model's ``forward_features(vis)``, frozen, same input.

On a GPU timings use CUDA events and bf16 autocast. Results go to ``--out`` (default ``benchmarks/results``) as
``efficiency_<machine>.json`` and ``.md`` with ratios to ``dual-branch`` and to the plain forward.

    python benchmarks/efficiency.py --quick     # a few minutes on 2 CPU cores
    python benchmarks/efficiency.py             # more repeats
    python benchmarks/efficiency.py --smoke     # tiny models, 1 repeat, in-process: seconds (the test suite)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine_info import machine, machine_tag

# "M+ckpt": method M with backbone.set_grad_checkpointing(True)
METHODS = ["plain", "iv-tuning", "dual-branch", "iv-tuning+ckpt", "frozen", "vpt", "adaptformer", "lora",
           "vis-only-full", "full"]
BACKBONES = {
    "swin-t": ("swin_tiny_patch4_window7_224", {"img_size": (480, 640)}),
    "vit-s": ("vit_small_patch16_224", {}),
}
SMOKE_BACKBONES = {
    "swin-tiny": ("swin_tiny_patch4_window7_224",
                  {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8), "img_size": (64, 96)}),
    "vit-tiny": ("vit_small_patch16_224", {"depth": 2, "embed_dim": 64, "num_heads": 2}),
}
SIZE, SMOKE_SIZE, BATCH = (480, 640), (64, 96), 2
NUM_CLASSES = 9


# ------------------------------------------------------------------------------------------------ one measurement
def _rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to the maximum)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return _max_rss_mb()


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class Timer:
    """Wall time of a callable: CUDA events on a GPU (the host does not wait on kernels), else perf_counter."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def __call__(self, fn) -> float:
        import torch

        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Build one (backbone, method), time train steps and inference; returns a result row."""
    import torch

    import ivtune
    from ivtune.tasks.seg.model import SegmentationModel

    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    timer = Timer(cuda)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    h, w = job["size"]
    g = torch.Generator().manual_seed(0)
    vis = torch.randn(BATCH, 3, h, w, generator=g).to(dev)
    ir = torch.randn(BATCH, 1, h, w, generator=g).to(dev)
    mask = torch.randint(0, NUM_CLASSES, (BATCH, h, w), generator=g).to(dev)
    torch.manual_seed(0)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_mb()
    row: dict[str, Any] = {"backbone": job["key"], "timm_name": job["name"], "method": job["method"],
                           "size": [h, w], "batch": BATCH, "warmup": job["warmup"], "repeats": job["repeats"]}
    warmup, repeats = job["warmup"], job["repeats"]

    if job["method"] == "plain":  # the floor: timm's own frozen single-modal forward
        import timm

        from ivtune.builder import family_for_model_name as _check_name

        family = _check_name(job["name"])
        model = timm.create_model(job["name"], num_classes=0, **{**family.default_kwargs, **job["kwargs"]})
        model = model.to(dev).eval().requires_grad_(False)
        row["trainable"] = 0

        def infer() -> None:
            with torch.no_grad(), autocast:
                model.forward_features(vis)
    else:
        method, _, option = job["method"].partition("+")
        backbone = ivtune.build_backbone(job["name"], method=method, **job["kwargs"])
        if option == "ckpt":  # recompute block activations in backward: memory for time
            backbone.set_grad_checkpointing(True)
        row["trainable"] = ivtune.count_parameters(backbone)["trainable"]
        seg = SegmentationModel(backbone, "segformer", num_classes=NUM_CLASSES, head_kwargs={"embed_dim": 128})
        seg = seg.to(dev).train()
        opt = torch.optim.AdamW([p for p in seg.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            with autocast:
                loss = seg.loss(seg(vis, ir).float(), mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        times = [timer(step) for _ in range(warmup + repeats)][warmup:]
        row["train_ms"] = statistics.median(times)
        row["train_ms_all"] = times
        if cuda:
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
            row["peak_mem_kind"] = "cuda max_memory_allocated"
        else:
            row["peak_mem_mb"] = _max_rss_mb() - rss0
            row["peak_mem_kind"] = "max RSS rise over the process before the build"
        del opt
        seg.eval()
        model = backbone

        def infer() -> None:
            with torch.no_grad(), autocast:
                model(vis, ir)

    times = [timer(infer) for _ in range(warmup + repeats)][warmup:]
    row["infer_ms"] = statistics.median(times)
    row["infer_ms_all"] = times
    return row


# ------------------------------------------------------------------------------------------------ driver
def jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    backbones = SMOKE_BACKBONES if args.smoke else BACKBONES
    size = SMOKE_SIZE if args.smoke else SIZE
    warmup, repeats = (0, 1) if args.smoke else (1, 2) if args.quick else (2, 7)
    out = []
    for key, (name, kwargs) in backbones.items():
        if args.backbones and key not in args.backbones:
            continue
        for method in args.methods or METHODS:
            if method.startswith("vpt") and name.startswith("swin"):
                continue  # VPT does not fit Swin's window attention (the method raises UnsupportedModelError)
            kw = dict(kwargs)
            if "img_size" in kw and not args.smoke:
                kw["img_size"] = size
            out.append({"key": key, "name": name, "kwargs": kw, "method": method, "size": list(size),
                        "warmup": warmup, "repeats": repeats})
    return out


def run_job(job: dict[str, Any], in_process: bool) -> dict[str, Any]:
    if in_process:
        import gc

        import torch

        row = measure(job)
        gc.collect()  # the next method's peak memory must not include this one's leftovers
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return row
    # a fresh process per method: the max-RSS high-water mark is then this method's alone
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{job['key']} / {job['method']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "—"


def markdown(rows: list[dict[str, Any]], mach: dict[str, Any], args: argparse.Namespace) -> str:
    dev = f"GPU {mach['gpu']} (CUDA {mach['cuda']}, bf16 autocast)" if mach["gpu"] else \
        f"CPU {mach['cpu']}, {mach['cores']} cores ({mach['torch_threads']} torch threads), fp32"
    mode = "smoke (tiny models)" if args.smoke else "quick" if args.quick else "full"
    lines = [
        f"# Efficiency ({mode})", "",
        f"Machine: {dev}; torch {mach['torch']}, Python {mach['python']}. Batch {BATCH}, input "
        f"{rows[0]['size'][0]}x{rows[0]['size'][1]}. Medians over {rows[0]['repeats']} repeats after "
        f"{rows[0]['warmup']} warm-up.", "",
        "Train step = forward + backward + AdamW step of backbone + SegFormer head (embed 128, 9 classes, CE). "
        "Peak memory = " + ("CUDA max_memory_allocated" if mach["gpu"] else
                            "rise of the max RSS of a fresh process per method, from before the build") +
        " (weights + grads + optimiser state + activations). Inference = backbone forward(vis, ir), no_grad, eval, "
        "no head. `plain` = the frozen single-modal timm `forward_features(vis)`; `+ckpt` = with "
        "`set_grad_checkpointing(True)`.", "",
        "| backbone | method | trainable | train step (ms) | vs dual | peak mem (MB) | vs dual | inference (ms) "
        "| vs plain |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in dict.fromkeys(r["backbone"] for r in rows):
        group = [r for r in rows if r["backbone"] == key]
        dual = next((r for r in group if r["method"] == "dual-branch"), {})
        plain = next((r for r in group if r["method"] == "plain"), {})
        for r in group:
            tr, mem = r.get("train_ms"), r.get("peak_mem_mb")
            lines.append(
                f"| {key} | {r['method']} | {r['trainable']:,} | {f'{tr:.0f}' if tr else '—'} | "
                f"{ratio(tr, dual.get('train_ms'))} | {f'{mem:.0f}' if mem else '—'} | "
                f"{ratio(mem, dual.get('peak_mem_mb'))} | {r['infer_ms']:.0f} | "
                f"{ratio(r['infer_ms'], plain.get('infer_ms'))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 warm-up + 2 repeats (default 2 + 7)")
    p.add_argument("--smoke", action="store_true", help="tiny models, small input, 1 repeat, in one process")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output folder")
    p.add_argument("--methods", nargs="*", default=None, help=f"subset of {METHODS}")
    p.add_argument("--backbones", nargs="*", default=None, help="subset of swin-t, vit-s (smoke: swin-tiny, vit-tiny)")
    p.add_argument("--in-process", action="store_true", help="no subprocess per method (memory then less exact)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0

    if args.smoke:
        import torch

        torch.set_num_threads(1)  # tiny tensors: extra threads only contend with the rest of the test suite
    mach = machine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"efficiency{'_smoke' if args.smoke else '_quick' if args.quick else ''}_{machine_tag(mach)}"
    rows = []
    for job in jobs(args):
        t = time.perf_counter()
        row = run_job(job, in_process=args.smoke or args.in_process)
        rows.append(row)
        print(f"{job['key']:>9} {job['method']:<14} train {row.get('train_ms', float('nan')):8.0f} ms  "
              f"mem {row.get('peak_mem_mb', float('nan')):7.0f} MB  infer {row['infer_ms']:7.0f} ms  "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        # rewritten after every method: an interrupted run still leaves its measurements
        (out / f"{stem}.json").write_text(json.dumps({"machine": mach, "mode": vars(args), "rows": rows}, indent=2)
                                          + "\n")
        (out / f"{stem}.md").write_text(markdown(rows, mach, args))
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
