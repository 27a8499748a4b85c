"""Efficiency of every training method: dispatched ops, train-step time, peak memory, inference latency.

For each method on Swin-T (``swin_tiny_patch4_window7_224``, ``img_size`` = the input size) and ViT-S
(``vit_small_patch16_224``, dynamic size), default 480x640, batch 2:

- trainable parameters of the backbone (as ``ivtune params`` counts them);
- dispatched aten ops (a ``TorchDispatchMode`` counts every op the dispatcher sees: a machine-independent proxy
  for kernel launches, which is what bounds a GPU at small batches), always on the CPU in fp32 on a fresh model in
  train mode, at ``--ops-size`` (default 224x320, batch 2, the setting of the op-count table in
  docs/choosing_a_method.md): ``ops fwd`` = one backbone forward, ``ops fwd+bwd`` = forward plus the backward of
  ``sum(out.mean())``, ``ops step`` = the whole train step below (backbone, head, loss, backward, AdamW with
  ``foreach=True``, CUDA's default);
- train step: forward + backward + AdamW step of the backbone with a small SegFormer head (``embed_dim`` 128,
  9 classes, cross-entropy on a random mask), in train mode; median over repeats after warm-up;
- peak memory of that training: CUDA ``max_memory_allocated`` on a GPU; on a CPU the rise of the process's
  maximum resident set size (``getrusage``) from before the model is built, each method in a fresh subprocess
  (weights, gradients, optimiser state and activations all count);
- inference latency: the backbone's ``forward(vis, ir)`` under ``no_grad`` in eval mode (no head), median;
- the floor: the plain single-modal timm model's ``forward_features(vis)``, frozen, same input.

``--compile`` adds a compiled row per method: ``IVBackbone.compile()`` (regional: every block through
``torch.compile``; on a GPU inference replays CUDA graphs) and, for ``plain``, ``torch.compile`` of the whole
``forward_features`` (``mode="reduce-overhead"`` on a GPU); ``first step`` then includes the compile time.
``--batches 2 8 32`` sweeps the batch size (on a GPU: where launch cost stops dominating). ``--baseline-src DIR``
runs every job a second time with another ivtune source tree (e.g. a checkout of the previous commit's ``src``),
interleaved, so before / after ratios come from one run on the same (possibly loaded) machine.

On a GPU timings use CUDA events and bf16 autocast. Results go to ``--out`` (default ``benchmarks/results``) as
``efficiency_<machine>.json`` and ``.md`` with ratios to ``dual-branch`` and to the plain forward.

    python benchmarks/efficiency.py --quick     # a few minutes on 2 CPU cores
    python benchmarks/efficiency.py             # more repeats
    python benchmarks/efficiency.py --ops-only  # op counts alone (seconds per method)
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
    "swin-t": ("swin_tiny_patch4_window7_224", {"img_size": None}),  # img_size: the input size of the job
    "vit-s": ("vit_small_patch16_224", {}),
}
SMOKE_BACKBONES = {
    "swin-tiny": ("swin_tiny_patch4_window7_224",
                  {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8), "img_size": None}),
    "vit-tiny": ("vit_small_patch16_224", {"depth": 2, "embed_dim": 64, "num_heads": 2}),
}
SIZE, SMOKE_SIZE, OPS_SIZE, BATCH = (480, 640), (64, 96), (224, 320), 2
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


def op_counter():
    """A ``TorchDispatchMode`` that counts every dispatched aten op (``.n``) and per op (``.per_op``)."""
    import collections

    from torch.utils._python_dispatch import TorchDispatchMode

    class OpCounter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.per_op: collections.Counter[str] = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.n += 1
            self.per_op[str(func.overloadpacket)] += 1
            return func(*args, **(kwargs or {}))

    return OpCounter()


def _timm_kwargs(kwargs: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """The job's timm kwargs with ``img_size`` set to the input size where the family needs a fixed one."""
    return {k: (tuple(size) if k == "img_size" else v) for k, v in kwargs.items()}


def _inputs(batch: int, size: tuple[int, int], dev):
    import torch

    g = torch.Generator().manual_seed(0)
    h, w = size
    vis = torch.randn(batch, 3, h, w, generator=g).to(dev)
    ir = torch.randn(batch, 1, h, w, generator=g).to(dev)
    mask = torch.randint(0, NUM_CLASSES, (batch, h, w), generator=g).to(dev)
    return vis, ir, mask


def _build(job: dict[str, Any], size: tuple[int, int]):
    """(backbone, seg model, optimiser) of the job's method, on the CPU, train mode; plain: the timm model."""
    import timm
    import torch

    import ivtune
    from ivtune.builder import family_for_model_name

    kwargs = _timm_kwargs(job["kwargs"], size)
    if job["method"] == "plain":
        family = family_for_model_name(job["name"])
        model = timm.create_model(job["name"], num_classes=0, **{**family.default_kwargs, **kwargs})
        return model.requires_grad_(False), None, None
    from ivtune.tasks.seg.model import SegmentationModel

    method, _, option = job["method"].partition("+")
    backbone = ivtune.build_backbone(job["name"], method=method, **kwargs)
    if option == "ckpt":  # recompute block activations in backward: memory for time
        backbone.set_grad_checkpointing(True)
    seg = SegmentationModel(backbone, "segformer", num_classes=NUM_CLASSES, head_kwargs={"embed_dim": 128})
    opt = torch.optim.AdamW([p for p in seg.parameters() if p.requires_grad], lr=1e-4)
    return backbone, seg.train(), opt


def count_ops(job: dict[str, Any]) -> dict[str, Any]:
    """Dispatched ops of one forward, forward + backward, and a whole train step (fresh models, CPU, fp32)."""
    import torch

    size = tuple(job["ops_size"])
    vis, ir, mask = _inputs(BATCH, size, "cpu")
    torch.manual_seed(0)
    model, _, _ = _build(job, size)
    if job["method"] == "plain":
        with op_counter() as c:
            model.forward_features(vis)
        return {"ops_fwd": c.n, "ops_size": list(size), "ops_batch": BATCH}
    row: dict[str, Any] = {"ops_size": list(size), "ops_batch": BATCH}
    with op_counter() as c:
        model.train()(vis, ir)
    row["ops_fwd"] = c.n
    torch.manual_seed(0)
    model, _, _ = _build(job, size)  # fresh: gradients start as None, as in a first step
    with op_counter() as c:
        sum(o.mean() for o in model.train()(vis, ir)).backward()
    row["ops_fwd_bwd"] = c.n
    torch.manual_seed(0)
    _, seg, _ = _build(job, size)
    # the multi-tensor AdamW (one op per kind for all parameters), CUDA's default; the CPU default loops over
    # the tensors (~12 ops each), which would count the number of parameter tensors rather than the method
    opt = torch.optim.AdamW([p for p in seg.parameters() if p.requires_grad], lr=1e-4, foreach=True)
    with op_counter() as c:
        loss = seg.loss(seg(vis, ir), mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    row["ops_step"] = c.n
    return row


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Build one (backbone, method), time train steps and inference; returns a result row."""
    import torch

    cuda = torch.cuda.is_available() and not job.get("cpu")
    dev = torch.device("cuda" if cuda else "cpu")
    timer = Timer(cuda)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    size, batch = tuple(job["size"]), job["batch"]
    row: dict[str, Any] = {"backbone": job["key"], "timm_name": job["name"], "method": job["method"],
                           "compiled": job["compile"], "code": job.get("code", "current"), "size": list(size),
                           "batch": batch, "warmup": job["warmup"], "repeats": job["repeats"]}
    if job.get("ops_size") and not job["compile"]:
        row.update(count_ops(job))
    if job.get("ops_only"):
        return row
    vis, ir, mask = _inputs(batch, size, dev)
    torch.manual_seed(0)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss0 = _rss_mb()
    warmup, repeats = job["warmup"], job["repeats"]
    model, seg, opt = _build(job, size)
    import ivtune

    if seg is None:  # the floor: timm's own frozen single-modal forward
        model = model.to(dev).eval()
        row["trainable"] = 0
        fwd = model.forward_features
        if job["compile"]:
            graphs = cuda and job.get("cuda_graphs", True)
            fwd = torch.compile(fwd, dynamic=False, mode="reduce-overhead" if graphs else None)

        def infer() -> None:
            with torch.no_grad(), autocast:
                fwd(vis)
    else:
        backbone = model
        if job["compile"]:
            backbone.compile(cuda_graphs=job.get("cuda_graphs", True))
        row["trainable"] = ivtune.count_parameters(backbone)["trainable"]
        seg = seg.to(dev)
        opt = torch.optim.AdamW([p for p in seg.parameters() if p.requires_grad], lr=1e-4)

        def step() -> None:
            with autocast:
                loss = seg.loss(seg(vis, ir).float(), mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        if job.get("skip_train"):
            step = None
        else:
            times = [timer(step) for _ in range(warmup + repeats)]
            row["first_step_ms"] = times[0]  # with --compile: the compile time of the training graphs
            row["train_ms"] = statistics.median(times[warmup:])
            row["train_ms_all"] = times[warmup:]
            if job.get("profile"):
                row["train_profile"] = profile(step, cuda)
        if step is None:
            pass
        elif cuda:
            row["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
            row["peak_mem_kind"] = "cuda max_memory_allocated"
        else:
            row["peak_mem_mb"] = _max_rss_mb() - rss0
            row["peak_mem_kind"] = "max RSS rise over the process before the build"
        del opt
        seg.eval()

        def infer() -> None:
            with torch.no_grad(), autocast:
                backbone(vis, ir)

    if not job.get("skip_infer"):
        times = [timer(infer) for _ in range(warmup + repeats)]
        row["first_infer_ms"] = times[0]
        row["infer_ms"] = statistics.median(times[warmup:])
        row["infer_ms_all"] = times[warmup:]
        if job.get("profile"):
            row["infer_profile"] = profile(infer, cuda)
    return row


def profile(fn, cuda: bool) -> dict[str, Any]:
    """One call of ``fn`` under ``torch.profiler``: kernels launched, GPU busy time against wall time (a GPU that is
    busy for a small part of the wall time waits on the host), and the most expensive ops."""
    import torch
    from torch.profiler import ProfilerActivity

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=acts) as prof:
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - t) * 1e3
    events = prof.events()
    kernels = [e for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    busy_ms = sum(e.time_range.elapsed_us() for e in kernels) / 1e3 if kernels else None  # one stream: no overlap
    table = prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=12)
    return {"wall_ms": wall_ms, "cuda_kernels": len(kernels), "gpu_busy_ms": busy_ms,
            "gpu_busy_fraction": busy_ms / wall_ms if busy_ms is not None else None,
            "cpu_ops": sum(1 for e in events if getattr(e, "device_type", None) == torch.autograd.DeviceType.CPU),
            "top": table}


# ------------------------------------------------------------------------------------------------ driver
def jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    backbones = SMOKE_BACKBONES if args.smoke else BACKBONES
    size = SMOKE_SIZE if args.smoke else tuple(args.size)
    warmup, repeats = (0, 1) if args.smoke else (1, 2) if args.quick else (2, 7)
    if args.warmup is not None:
        warmup = args.warmup
    if args.repeats is not None:
        repeats = args.repeats
    ops_size = None if args.no_ops else (SMOKE_SIZE if args.smoke else tuple(args.ops_size))
    codes = [("current", None)] + ([("baseline", str(Path(args.baseline_src).resolve()))] if args.baseline_src else [])
    out = []
    for key, (name, kwargs) in backbones.items():
        if args.backbones and key not in args.backbones:
            continue
        for method in args.methods or METHODS:
            if method.startswith("vpt") and name.startswith("swin"):
                continue  # VPT does not fit Swin's window attention (the method raises UnsupportedModelError)
            for batch in args.batches or [BATCH]:
                for compiled in ([False, True] if args.compile else [False]):
                    if compiled and args.compile_only_methods and method not in args.compile_only_methods:
                        continue
                    # the baseline tree only for the methods whose code changed (its other rows are the same code)
                    for code, src in codes if method.startswith(("iv-tuning", "frozen")) else codes[:1]:
                        out.append({"key": key, "name": name, "kwargs": dict(kwargs), "method": method,
                                    "size": list(size), "batch": batch, "compile": compiled, "warmup": warmup,
                                    "repeats": repeats, "code": code, "src": src, "ops_only": args.ops_only,
                                    "ops_size": list(ops_size) if ops_size and batch == (args.batches or [BATCH])[0]
                                    else None, "cpu": args.cpu, "skip_train": args.skip_train,
                                    "skip_infer": args.skip_infer, "profile": args.profile,
                                    "cuda_graphs": not args.no_cuda_graphs})
    return out


def run_job(job: dict[str, Any], in_process: bool) -> dict[str, Any]:
    if in_process and job.get("src") is None:
        import gc

        import torch

        row = measure(job)
        gc.collect()  # the next method's peak memory must not include this one's leftovers
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return row
    # a fresh process per method: the max-RSS high-water mark is then this method's alone
    env = dict(os.environ)
    if job.get("src"):  # another ivtune tree first on the path (the before / after comparison)
        env["PYTHONPATH"] = job["src"] + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{job['key']} / {job['method']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "—"


def _num(x: float | None, fmt: str = ".0f") -> str:
    return "—" if x is None else f"{x:{fmt}}" if isinstance(x, float) else f"{x:,}"


def _label(r: dict[str, Any]) -> str:
    return r["method"] + (" (compiled)" if r.get("compiled") else "") + (" [before]" if r.get("code") == "baseline"
                                                                        else "")


ROW_KEY = ("backbone", "method", "batch", "compiled", "code")


def combine_rounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job: with ``--rounds N`` the median over the rounds of each timing and of the peak memory."""
    out: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = tuple(r.get(k) for k in ROW_KEY)
        if key not in out:
            out[key] = {**r, "rounds": []}
        out[key]["rounds"].append({k: r.get(k) for k in ("train_ms", "infer_ms", "peak_mem_mb")})
    for r in out.values():
        for k in ("train_ms", "infer_ms", "peak_mem_mb"):
            values = [x[k] for x in r["rounds"] if x[k] is not None]
            if values:
                r[k] = statistics.median(values)
    return list(out.values())


def markdown(rows: list[dict[str, Any]], mach: dict[str, Any], args: argparse.Namespace) -> str:
    rows = combine_rounds(rows)
    gpu = mach["gpu"] and not args.cpu
    dev = f"GPU {mach['gpu']} (CUDA {mach['cuda']}, bf16 autocast)" if gpu else \
        f"CPU {mach['cpu']}, {mach['cores']} cores ({mach['torch_threads']} torch threads), fp32"
    mode = "smoke (tiny models)" if args.smoke else "quick" if args.quick else "full"
    first = rows[0]
    ops = next((r for r in rows if r.get("ops_size")), None)
    lines = [
        f"# Efficiency ({mode})", "",
        f"Machine: {dev}; torch {mach['torch']}, Python {mach['python']}. Input {first['size'][0]}x{first['size'][1]}"
        f"; medians over {first['repeats']} repeats after {first['warmup']} warm-up"
        + (f", then the median over {args.rounds} interleaved rounds" if args.rounds > 1 else "") + ".", "",
        "Train step = forward + backward + AdamW step of backbone + SegFormer head (embed 128, 9 classes, CE). "
        "Peak memory = " + ("CUDA max_memory_allocated" if gpu else
                            "rise of the max RSS of a fresh process per method, from before the build") +
        " (weights + grads + optimiser state + activations). Inference = backbone forward(vis, ir), no_grad, eval, "
        "no head. `plain` = the frozen single-modal timm `forward_features(vis)`; `+ckpt` = with "
        "`set_grad_checkpointing(True)`; `(compiled)` = `IVBackbone.compile()` (plain: `torch.compile`), first "
        "step = compile + one step; `[before]` = the `--baseline-src` tree."
        + (f" Ops = dispatched aten ops counted on the CPU (fp32, train mode, fresh model) at "
           f"{ops['ops_size'][0]}x{ops['ops_size'][1]}, batch {ops['ops_batch']}." if ops else ""), "",
        "| backbone | method | batch | trainable | ops fwd | ops fwd+bwd | ops step | train step (ms) | vs dual "
        "| first step (ms) | peak mem (MB) | vs dual | inference (ms) | vs plain |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in dict.fromkeys(r["backbone"] for r in rows):
        for batch in dict.fromkeys(r["batch"] for r in rows if r["backbone"] == key):
            group = [r for r in rows if r["backbone"] == key and r["batch"] == batch]
            for r in group:
                same = [g for g in group if g.get("compiled") == r.get("compiled") and g.get("code") == "current"]
                dual = next((g for g in same if g["method"] == "dual-branch"), {})
                plain = next((g for g in same if g["method"] == "plain"), {})
                tr, mem, inf = r.get("train_ms"), r.get("peak_mem_mb"), r.get("infer_ms")
                lines.append(
                    f"| {key} | {_label(r)} | {batch} | {_num(r.get('trainable'))} | {_num(r.get('ops_fwd'))} | "
                    f"{_num(r.get('ops_fwd_bwd'))} | {_num(r.get('ops_step'))} | {_num(tr)} | "
                    f"{ratio(tr, dual.get('train_ms'))} | {_num(r.get('first_step_ms'))} | {_num(mem)} | "
                    f"{ratio(mem, dual.get('peak_mem_mb'))} | {_num(inf)} | {ratio(inf, plain.get('infer_ms'))} |")
    before = [r for r in rows if r.get("code") == "baseline"]
    if before:
        lines += ["", "Before / after (`--baseline-src`), same machine, same run:", "",
                  "| backbone | method | batch | ops fwd | ops fwd+bwd | train step | peak mem | inference |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for b in before:
            a = next((r for r in rows if r.get("code") == "current" and all(
                r.get(k) == b.get(k) for k in ("backbone", "method", "batch", "compiled"))), None)
            if a is None:
                continue
            lines.append(
                f"| {b['backbone']} | {_label(a)} | {b['batch']} | {_num(b.get('ops_fwd'))} -> {_num(a.get('ops_fwd'))}"
                f" | {_num(b.get('ops_fwd_bwd'))} -> {_num(a.get('ops_fwd_bwd'))} | "
                f"{ratio(a.get('train_ms'), b.get('train_ms'))} | {ratio(a.get('peak_mem_mb'), b.get('peak_mem_mb'))}"
                f" | {ratio(a.get('infer_ms'), b.get('infer_ms'))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 warm-up + 2 repeats (default 2 + 7)")
    p.add_argument("--smoke", action="store_true", help="tiny models, small input, 1 repeat, in one process")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output folder")
    p.add_argument("--tag", default="", help="extra word in the output file names")
    p.add_argument("--methods", nargs="*", default=None, help=f"subset of {METHODS}")
    p.add_argument("--backbones", nargs="*", default=None, help="subset of swin-t, vit-s (smoke: swin-tiny, vit-tiny)")
    p.add_argument("--size", nargs=2, type=int, default=list(SIZE), metavar=("H", "W"), help="input size (480 640)")
    p.add_argument("--batches", nargs="*", type=int, default=None, help="batch sizes to sweep (default 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up repeats (overrides --quick)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (overrides --quick)")
    p.add_argument("--compile", action="store_true", help="also measure every method compiled")
    p.add_argument("--compile-only-methods", nargs="*", default=None, help="with --compile: compile only these")
    p.add_argument("--ops-size", nargs=2, type=int, default=list(OPS_SIZE), metavar=("H", "W"),
                   help="input size of the op counts (224 320)")
    p.add_argument("--no-ops", action="store_true", help="do not count ops")
    p.add_argument("--ops-only", action="store_true", help="only count ops (no timing)")
    p.add_argument("--cpu", action="store_true", help="time on the CPU even when a GPU is present")
    p.add_argument("--skip-train", action="store_true", help="time inference only")
    p.add_argument("--skip-infer", action="store_true", help="time the train step only")
    p.add_argument("--profile", action="store_true", help="one profiled step: kernels, GPU busy / wall time")
    p.add_argument("--no-cuda-graphs", action="store_true", help="with --compile: inference without CUDA graphs")
    p.add_argument("--rounds", type=int, default=1, help="run the job list N times interleaved; report medians")
    p.add_argument("--baseline-src", default=None, help="another ivtune src/ tree to run every job with too")
    p.add_argument("--in-process", action="store_true", help="no subprocess per method (memory then less exact)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0

    if args.smoke:
        import torch

        torch.set_num_threads(1)  # tiny tensors: extra threads only contend with the rest of the test suite
    mach = machine("cpu" if args.cpu else "auto")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "_smoke" if args.smoke else "_ops" if args.ops_only else "_quick" if args.quick else ""
    stem = f"efficiency{mode}{'_' + args.tag if args.tag else ''}_{machine_tag(mach)}"
    rows = []
    # --rounds: the whole job list again, interleaved, so a change of machine load hits every job alike
    for job in jobs(args) * args.rounds:
        t = time.perf_counter()
        row = run_job(job, in_process=args.smoke or args.in_process)
        rows.append(row)
        nan = float("nan")
        print(f"{job['key']:>9} {_label(row):<32} b{job['batch']:<3} ops {row.get('ops_fwd', '-')}/"
              f"{row.get('ops_fwd_bwd', '-')}/{row.get('ops_step', '-')}  train {row.get('train_ms', nan):8.1f} ms  "
              f"mem {row.get('peak_mem_mb', nan):7.0f} MB  infer {row.get('infer_ms', nan):7.1f} ms  first "
              f"{row.get('first_step_ms', nan):8.0f} ms  ({time.perf_counter() - t:.0f} s)", flush=True)
        # rewritten after every method: an interrupted run still leaves its measurements
        (out / f"{stem}.json").write_text(json.dumps({"machine": mach, "mode": vars(args), "rows": rows}, indent=2)
                                          + "\n")
        (out / f"{stem}.md").write_text(markdown(rows, mach, args))
    print(f"wrote {out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
