"""Detection on synthetic day / night scenes: IV-tuning vs the visible-only full fine-tuning baseline.

All variants get the same detector (FPN + FCOS by default), data, head learning rate and budget; ``model.method``
differs (``iv-tuning``: frozen backbone + IV modules, sees VIS + IR; ``vis-only-full``: every backbone weight
trains, the IR image is ignored), and ``iv-tuning:zeros`` starts the adapters as an identity
(``model.adapter_init=zeros``) instead of the authors' random init, which on DINOv2 changes the frozen features
almost completely at step 0. At night the synthetic objects show only in the thermal image, so the baseline should
fall behind there. Each method trains for ``--budget-s`` seconds of wall time or ``--steps`` steps, whichever
ends first, then COCO mAP / AP50 are computed on the test scenes, overall and per condition.

    python benchmarks/detection.py --budget-s 300                   # tiny random-init ViT, minutes on 2 CPU cores
    python benchmarks/detection.py --weights PATH/dinov2_vits14.safetensors --budget-s 600   # a real frozen backbone
    python benchmarks/detection.py --smoke --out /tmp/x              # 2 steps, tiny: seconds (the test suite)
    python benchmarks/detection.py --head rtdetr --weights PATH --steps 1000   # RT-DETR (the detr extra) instead

``--head rtdetr`` reads ``configs/det/synthetic_tiny_rtdetr.yaml`` (a small RT-DETRv2; with ``--weights`` its width
is 128, as the FCOS FPN's there) and also writes ``<stem>_loss.png``: DETRs converge slowly, the curves show
whether the budget was long enough.

Results: ``--out`` (default ``benchmarks/results``) ``detection_<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from machine_info import describe, machine, machine_tag

from ivtune.methods import get_method
from ivtune.tasks.det.model import HEADS

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml"
CONFIGS = {"rtdetr": REPO / "configs" / "det" / "synthetic_tiny_rtdetr.yaml"}  # head -> its config; else CONFIG
# "method" or "method:adapter_init"; zeros = the adapters' last projections start at zero (identity at step 0)
VARIANTS = ("iv-tuning", "iv-tuning:zeros", "vis-only-full")


def overrides_for(args: argparse.Namespace, variant: str) -> list[str]:
    method, _, init = variant.partition(":")
    o = [f"model.method={method}", f"model.adapter_init={init or 'default'}", f"model.head={args.detector}",
         f"data.num_samples={args.train_samples}",
         f"data.batch_size={args.batch_size}", f"train.max_steps={args.steps}", "optim.schedule=constant"]
    # the pretrained weights train at a fine-tuning rate, the new IV modules at a higher one (as in synthetic.py);
    # the detector head gets the same rate for every method
    lr = args.lr_full if get_method(method).trains_backbone else args.lr
    o += [f"optim.lr={lr}", f"optim.head_lr_mult={args.head_lr / lr}"]
    if method != "iv-tuning":  # adapters only exist with iv-tuning
        o.append("model.adapter_dropout=0.0")
    if args.weights:
        width = "d_model" if args.detector == "rtdetr" else "fpn_channels"
        o += ["model.backbone=vit_small_patch14_dinov2", f"model.weights={args.weights}",
              "model.timm_kwargs={dynamic_img_size: true}", f"model.head_kwargs.{width}=128"]
    return o + list(args.set)


def _to(images: list[torch.Tensor], dev: torch.device) -> list[torch.Tensor]:
    return [x.to(dev, non_blocking=True) for x in images]


def train_and_eval(cfg, args: argparse.Namespace) -> dict[str, Any]:
    from ivtune.engine.datamodule import SeededView
    from ivtune.engine.sampling import StepBatchSampler
    from ivtune.engine.schedule import build_optimizer, lr_lambda, param_groups
    from ivtune.tasks.det.metrics import coco_evaluate
    from ivtune.tasks.det.task import build_dataset, build_det_model, rescale_boxes, subset_coco, to_coco_detections
    from ivtune.tasks.det.transforms import collate_det

    torch.manual_seed(cfg.train.seed)
    train_ds = build_dataset(cfg, "train", train=True)
    test_cfg = replace(cfg, data=replace(cfg.data, num_samples=args.test_samples))
    test_ds = build_dataset(test_cfg, "test", train=False)
    dev = torch.device(args.device)
    model = build_det_model(cfg, len(train_ds.classes)).to(dev)
    # bf16 autocast on a GPU (as the GPU recipes train); fp32 on the CPU
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    head = torch.nn.ModuleList([m for n, m in model.named_children() if n != "backbone"])
    opt = build_optimizer(param_groups(model.backbone, head, cfg.optim), cfg.optim)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.optim, cfg.train.max_steps))
    sampler = StepBatchSampler(len(train_ds), cfg.data.batch_size, cfg.train.max_steps, seed=cfg.train.seed)
    view = SeededView(train_ds)
    trainable = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    model.train()
    start, steps, losses, components = time.perf_counter(), 0, [], {}
    for items in sampler:
        batch = collate_det([view[it] for it in items])
        targets = [{"boxes": b.to(dev), "labels": lab.to(dev), "ignore": ig.to(dev)}
                   for b, lab, ig in zip(batch["boxes"], batch["labels"], batch["ignore"], strict=True)]
        with autocast:
            parts = model(_to(batch["vis"], dev), _to(batch["ir"], dev), targets)
            loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.optim.grad_clip_norm)
        opt.step()
        sched.step()
        values = torch.stack([v.detach().float() for v in parts.values()]).tolist()  # one host sync for all terms
        for name, value in zip(parts, values, strict=True):
            components.setdefault(name, []).append(value)
        losses.append(sum(values))
        steps += 1
        if time.perf_counter() - start >= args.budget_s:
            break
    train_s = time.perf_counter() - start
    model.eval()
    dets, conds = [], {}
    with torch.no_grad():
        for i in range(0, len(test_ds), cfg.data.eval_batch_size):
            batch = collate_det([test_ds[j] for j in range(i, min(i + cfg.data.eval_batch_size, len(test_ds)))])
            with autocast:
                out = model(_to(batch["vis"], dev), _to(batch["ir"], dev))
            for det, meta in zip(out, batch["meta"], strict=True):
                det = {k: v.float().cpu() for k, v in det.items()}
                conds[int(meta["image_id"])] = meta.get("condition")
                dets += to_coco_detections({**det, "boxes": rescale_boxes(det["boxes"], meta)}, meta["image_id"])
    gt = test_ds.to_coco()
    results = {}
    for name in ("all", "day", "night"):
        ids = {i for i, c in conds.items() if name == "all" or c == name}
        if ids:
            r = coco_evaluate(subset_coco(gt, ids), [d for d in dets if d["image_id"] in ids])
            results[name] = {"mAP": r["mAP"], "AP50": r["AP50"], "images": len(ids)}
    k = max(1, min(5, len(losses) // 2))
    w = max(1, len(losses) // 40)  # the loss curve: means over windows of w steps, about 40 points
    return {"steps": steps, "train_s": round(train_s, 1), "trainable_backbone_params": trainable,
            "loss_first": round(sum(losses[:k]) / k, 4), "loss_last": round(sum(losses[-k:]) / k, 4),
            # each loss term at the end (mean of the last 10 % of steps): which part of the detector did not learn
            "loss_last_parts": {n: round(sum(v[-m:]) / m, 4) for n, v in components.items()
                                for m in [max(1, len(v) // 10)]},
            "loss_curve": {"window": w, "steps": [min(i + w, len(losses)) for i in range(0, len(losses), w)],
                           "loss": [round(sum(losses[i:i + w]) / len(losses[i:i + w]), 4)
                                    for i in range(0, len(losses), w)]},
            "results": results}


def plot_loss_curves(rows: dict[str, Any], path: Path, title: str) -> Path:
    """One training-loss curve per method (the window means of ``loss_curve``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method, row in rows.items():
        ax.plot(row["loss_curve"]["steps"], row["loss_curve"]["loss"], label=method)
    ax.set(xlabel="step", ylabel="training loss (window mean)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def last_layer_terms(parts: dict[str, float]) -> dict[str, float]:
    """The loss terms to print: RT-DETR's ~30 (every decoder layer, the encoder's queries, denoising) shrink to the
    last decoder layer's; the report's JSON keeps them all."""
    return {k: v for k, v in parts.items() if "_aux_" not in k and "_dn_" not in k}


def write_report(payload: dict[str, Any], out_dir: Path, stem: str) -> Path:
    """``<stem>.json`` (everything) and ``<stem>.md`` (the table) in ``out_dir``; returns the path without suffix."""
    args, rows = argparse.Namespace(**payload["args"]), payload["methods"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    precision = "bf16 autocast" if args.device.startswith("cuda") else "fp32"
    lines = [f"# Detection on synthetic scenes ({args.detector})", "",
             f"Machine: {describe(payload['machine'])}; {args.device}, {precision}."
             + (f" {args.note}" if getattr(args, "note", None) else ""), "",
             f"Budget {args.budget_s:.0f} s or {args.steps} steps per method, {args.train_samples} train / "
             f"{args.test_samples} test scenes, batch {args.batch_size}, backbone "
             f"{'DINOv2-S (' + args.weights + ')' if args.weights else 'tiny random-init ViT'}; lr {args.lr} (IV "
             f"modules) / {args.lr_full} (backbone weights), head {args.head_lr}, AdamW, constant after warm-up"
             + (f"; overrides {', '.join(args.set)}" if args.set else "") + ".", "",
             "| method | steps | train s | trainable backbone | mAP | AP50 all | AP50 day | AP50 night |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, row in rows.items():
        r = row["results"]

        def cell(c: str, k: str = "AP50", r: dict = r) -> str:
            return "–" if r.get(c, {}).get(k) is None else f"{r[c][k]:.2f}"

        lines.append(f"| {method} | {row['steps']} | {row['train_s']} | {row['trainable_backbone_params']:,} | "
                     f"{cell('all', 'mAP')} | {cell('all')} | {cell('day')} | {cell('night')} |")
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return out_dir / stem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS),
                   help="methods to compare, 'method' or 'method:adapter_init' (default: %(default)s)")
    p.add_argument("--budget-s", type=float, default=300.0, help="training wall time per method (seconds)")
    p.add_argument("--steps", type=int, default=100_000, help="at most this many steps per method")
    p.add_argument("--head", "--detector", dest="detector", default="fcos", choices=HEADS,
                   help="model.head of every variant (rtdetr: the detr extra; default %(default)s)")
    p.add_argument("--train-samples", type=int, default=128)
    p.add_argument("--test-samples", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=5e-4, help="lr of the IV modules (iv-tuning)")
    p.add_argument("--lr-full", type=float, default=1e-4, help="lr of methods that train the backbone weights")
    p.add_argument("--head-lr", type=float, default=2e-3, help="lr of the FPN + detector head, every method")
    p.add_argument("--weights", default=None, help="local DINOv2-S file: use vit_small_patch14_dinov2 frozen")
    p.add_argument("--config", default=None, help="default: the head's synthetic_tiny_*.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every variant, e.g. data.height=256 (repeatable)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present; bf16 autocast there)")
    p.add_argument("--note", default=None, help="a sentence for the report's machine line (e.g. the load)")
    p.add_argument("--smoke", action="store_true", help="2 steps, 8 + 4 scenes: checks the script runs")
    args = p.parse_args(argv)
    if args.smoke:
        args.steps, args.train_samples, args.test_samples, args.batch_size = 2, 8, 4, 2
    args.config = args.config or str(CONFIGS.get(args.detector, CONFIG))

    from ivtune import load_config

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = {}
    for method in args.variants:
        cfg = load_config(args.config, overrides_for(args, method))
        rows[method] = train_and_eval(cfg, args)
        r = rows[method]["results"]
        print(f"{method:>16}: {rows[method]['steps']} steps in {rows[method]['train_s']} s, loss "
              f"{rows[method]['loss_first']} -> {rows[method]['loss_last']}; AP50 all / day / night "
              + " / ".join(f"{r.get(c, {}).get('AP50', float('nan')):.2f}" for c in ("all", "day", "night"))
              + f"; last losses {last_layer_terms(rows[method]['loss_last_parts'])}", flush=True)
    mach = machine(args.device)
    payload = {"machine": mach, "args": vars(args), "methods": rows}
    stem = f"detection_{machine_tag(mach)}" + ("_smoke" if args.smoke else "")
    out = write_report(payload, Path(args.out), stem)
    if args.detector == "rtdetr":
        plot_loss_curves(rows, out.with_name(f"{stem}_loss.png"), f"{args.detector} on synthetic scenes")
    print(f"wrote {out}.json / .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
