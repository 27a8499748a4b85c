"""``ivtune export``: a trained run as an ONNX graph, checked by ``onnx.checker`` and against torch in onnxruntime.

The graph is the task's :class:`~ivtune.engine.predict.DeployGraph` (step 2 of :mod:`ivtune.engine.predict`):
inputs ``vis`` float32 (1, 3, H, W) and ``ir`` float32 (1, C, H, W), C = the run's ``data.ir_channels``, both
normalised and padded as the file's metadata says; outputs segmentation ``logits`` (1, K, H, W), the SOD
``saliency`` (1, 1, H, W), or for FCOS / RetinaNet the raw head outputs (``cls_logits``, ``bbox_regression``,
``bbox_ctrness``, ``anchors``, ``level_sizes``) whose decoding + NMS is
:func:`ivtune.tasks.det.task.decode_dense` (torchvision's own post-processing, which has data-dependent shapes and
does not export). The metadata (``ivtune.*`` keys) holds the preprocessing numbers, class names, input layout,
the post-processing parameters and the ivtune version, so :meth:`ivtune.Predictor.from_onnx` (or a deployment
without ivtune) reproduces :meth:`ivtune.Predictor.from_run`.

Export goes through ``torch.export`` (non-strict) and torch's ONNX exporter (``dynamo=True``, onnxscript); the
written file is checked with ``onnx.checker`` (full check) and run once in onnxruntime (CPU) on a fixed input
against the torch graph, and twice (two sizes) with ``--dynamic``; any difference above the tolerances below is an
:class:`ExportError` and the file is not left under its name.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..engine.predict import INPUT_LAYOUT, InputSpec, PredictContext
from ..errors import IVTuneError
from ..version import __version__
from .onnx_model import FORMAT, OnnxBackend
from .predictor import TorchBackend, deployment_of

# 23: torch's exporter writes scaled_dot_product_attention as ONNX's fused Attention op, which onnxruntime runs
# in one kernel; at 18 it is MatMul / Softmax / MatMul (ViT-S seg at 480x640 on 2 CPU cores: 794 vs 1,054 ms)
DEFAULT_OPSET = 23
MAX_DYNAMIC_SIDE = 4096  # largest height / width a --dynamic graph is traced for
PARITY_ATOL = 1e-4  # onnxruntime vs torch: segmentation logits, SOD maps, detection scores
BOX_ATOL = 1e-3  # detection boxes, pixels
FP16_RTOL = 2e-2  # a --fp16 graph against the fp32 torch model, relative to the output's largest magnitude
EXTRAS = ("onnx", "onnxruntime", "onnxscript")
# backbone families whose graph cannot take symbolic sizes (why, for the --dynamic error); the others trace it
FIXED_SIZE_FAMILIES = {
    family: "its shifted-window attention pads every stage's grid to window multiples and builds the shift mask "
            "from the grid size (timm's window partition), which torch.export cannot keep symbolic"
    for family in ("swin", "swinv2")
}


class ExportError(IVTuneError, RuntimeError):
    """A run cannot be exported as asked, or the exported graph does not reproduce the torch model."""


def _require_extras() -> None:
    missing = [m for m in EXTRAS if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: pip install 'ivtune[export]'.")


# ------------------------------------------------------------------------------------------------ export
@dataclass
class ExportReport:
    """What ``ivtune export`` wrote and checked: one row per checked size and output."""

    path: Path
    task: str
    size: tuple[int, int] | None  # None: dynamic height / width
    opset: int
    fp16: bool
    checks: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def format(self) -> str:
        shape = "dynamic H x W" if self.size is None else f"{self.size[0]}x{self.size[1]}"
        lines = [f"{self.path}: {self.task}, {shape}, opset {self.opset}{', fp16' if self.fp16 else ''} "
                 f"({self.seconds:.1f} s); onnx.checker ok"]
        for c in self.checks:
            lines.append(f"  onnxruntime vs torch at {c['size'][0]}x{c['size'][1]}: {c['what']} max |diff| "
                         f"{c['max_abs_diff']:.2e} (limit {c['limit']:.0e})")
        return "\n".join(lines)


class _Half(nn.Module):
    """A half-precision copy of a graph behind float32 inputs and outputs (``--fp16``)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        # not "graph": the exporter's fx GraphModule has its own .graph, which would shadow this submodule
        self.half_graph = copy.deepcopy(graph).half()
        self.output_names = graph.output_names

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.half_graph(vis.half(), ir.half())
        return tuple(o.float() if o.is_floating_point() else o for o in out)


def example_inputs(size: tuple[int, int], ir_channels: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, normalised-looking pair (standard normal values) of ``size``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, *size, generator=g), torch.randn(1, ir_channels, *size, generator=g)


def export_size(spec: InputSpec, size: Sequence[int] | None, dynamic: bool, what: str) -> tuple[int, int]:
    """The traced input size: ``size``, else the run's fixed resize (SOD); checked against the padding multiple."""
    m = spec.pad_multiple
    if size is None:
        if spec.size is not None:
            size = spec.size
        elif dynamic:
            size = (8 * m, 10 * m)  # any multiple traces the same symbolic graph
        else:
            raise ExportError(f"{what} resizes inputs to no fixed size: give the graph's input size with --size H W "
                              f"(multiples of {m}, e.g. --size {15 * m} {20 * m}), or export with --dynamic.")
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0 or h % m or w % m:
        ph, pw = spec.padded_shape(max(h, 1), max(w, 1))
        raise ExportError(f"--size {h} {w} is not a multiple of {m} ({what}: the inputs are padded to multiples of "
                          f"{m}). Export with --size {ph} {pw} (pad to it) or with --dynamic.")
    return h, w


def check_dynamic(module: nn.Module, what: str, multiple: int) -> None:
    """Raise the named --dynamic error for a backbone family that fixes sizes, before any (slow) tracing."""
    from ..backbones.base import IVBackbone

    families = {m.family.name for m in module.modules() if isinstance(m, IVBackbone)}
    fixed = sorted(families & set(FIXED_SIZE_FAMILIES))
    if fixed:
        family = fixed[0]
        raise ExportError(f"--dynamic is not supported for {what}: the {family} backbone family fixes the input "
                          f"height / width ({FIXED_SIZE_FAMILIES[family]}). Export one graph per input size with "
                          f"--size H W (multiples of {multiple}).")


def _describe(module: Any) -> str:
    m = module.cfg.model
    return f"{m.backbone} (method {m.method}, head {m.head})"


def _torch_export(graph: nn.Module, args: tuple[torch.Tensor, torch.Tensor], dynamic: bool, multiple: int,
                  what: str):
    shapes = None
    if dynamic:
        # sizes are multiples of the padding multiple: symbolic h * m lets the pyramid's ceil(H / s) simplify
        h = torch.export.Dim("h", min=1, max=MAX_DYNAMIC_SIDE // multiple) * multiple
        w = torch.export.Dim("w", min=1, max=MAX_DYNAMIC_SIDE // multiple) * multiple
        shapes = {"vis": {2: h, 3: w}, "ir": {2: h, 3: w}}
    try:
        return torch.export.export(graph, args, dynamic_shapes=shapes, strict=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if dynamic and ("specialized" in str(exc) or "Constraints violated" in str(exc)):
            raise ExportError(f"--dynamic is not supported for {what}: the traced model fixes the input height / "
                              f"width ({first}). Export one graph per input size with --size H W (multiples of "
                              f"{multiple}).") from exc
        raise ExportError(f"{what} cannot be exported to ONNX: torch.export failed ({type(exc).__name__}: {first}). "
                          "Run it in torch with ivtune.Predictor.from_run, or retrain with an exportable method / "
                          "head (every method with fcos, retinanet, segformer, upernet or cpnet heads).") from exc


def _metadata(task: str, spec: InputSpec, info: dict[str, Any], names: Sequence[str], size: tuple[int, int] | None,
              fp16: bool, source: str, what: str) -> dict[str, str]:
    meta = {
        "ivtune.format": FORMAT,
        "ivtune.version": __version__,
        "ivtune.task": task,
        "ivtune.inputs": json.dumps(spec.to_dict()),
        "ivtune.info": json.dumps(info),
        "ivtune.class_names": json.dumps(info.get("classes", [])),
        "ivtune.input_layout": INPUT_LAYOUT,
        "ivtune.outputs": json.dumps(list(names)),
        "ivtune.size": "dynamic" if size is None else f"{size[0]}x{size[1]}",
        "ivtune.precision": "fp16" if fp16 else "fp32",
        "ivtune.model": what,
        "ivtune.source": source,
    }
    if "decode" in info:
        meta["ivtune.postprocess"] = (
            f"{info['detector']} raw head outputs: decode with torchvision's {info['detector']} "
            "postprocess_detections (ivtune.tasks.det.task.decode_dense): split every output by level_sizes, "
            f"score = sigmoid(cls_logits){' * sigmoid(bbox_ctrness), sqrt' if info['detector'] == 'fcos' else ''}, "
            "keep > score_thresh, top-k per level, decode boxes against anchors, clip to the unpadded input, "
            "class-wise NMS at nms_thresh, keep detections_per_img; labels minus label_offset; parameters in "
            "ivtune.info['decode']")
    return meta


def _compare(task: str, ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor], ctx: PredictContext,
             info: dict[str, Any], fp16: bool) -> list[dict[str, Any]]:
    """Max differences (and whether they pass) of onnxruntime's outputs against torch's."""
    rows = []
    for name, r in ref.items():
        g = got[name]
        if tuple(g.shape) != tuple(r.shape):
            raise ExportError(f"onnxruntime's output {name!r} is {tuple(g.shape)} but torch's is {tuple(r.shape)} at "
                              f"{ctx.input_size[0]}x{ctx.input_size[1]}: the exported graph fixed a size it should "
                              "not have. Export with --size for this size instead.")
        if not r.is_floating_point():
            rows.append({"what": name, "max_abs_diff": float((g != r).sum()), "limit": 0.0, "enforced": True})
            continue
        diff = float((g.float() - r.float()).abs().max()) if r.numel() else 0.0
        limit = FP16_RTOL * max(1.0, float(r.abs().max())) if fp16 else PARITY_ATOL
        rows.append({"what": name, "max_abs_diff": diff, "limit": limit, "enforced": task != "det" or fp16})
    if task == "det" and not fp16:
        post = deployment_of(task).postprocess
        a, b = post(ref, ctx, info), post(got, ctx, info)
        if len(a.labels) != len(b.labels) or not np.array_equal(a.labels, b.labels):
            raise ExportError(f"onnxruntime and torch give different detections after NMS ({len(b.labels)} vs "
                              f"{len(a.labels)} boxes, labels {b.labels[:10].tolist()} vs {a.labels[:10].tolist()}).")
        rows.append({"what": "detection boxes (px)", "max_abs_diff": float(np.abs(a.boxes - b.boxes).max(initial=0)),
                     "limit": BOX_ATOL, "enforced": True, "detections": len(a.labels)})
        rows.append({"what": "detection scores", "max_abs_diff": float(np.abs(a.scores - b.scores).max(initial=0)),
                     "limit": PARITY_ATOL, "enforced": True})
    return rows


def export_module(module: Any, out: str | Path, *, size: Sequence[int] | None = None, dynamic: bool = False,
                  opset: int = DEFAULT_OPSET, fp16: bool = False, source: str = "") -> ExportReport:
    """Export a task module (a run's trained model) to ``out``; see :func:`export_onnx`."""
    _require_extras()
    import onnx

    from ..checkpoint import atomic_write

    start = time.perf_counter()
    module = module.eval()
    task = module.cfg.task
    dep = deployment_of(task)
    what = _describe(module)
    graph = dep.graph(module)
    if graph.not_exportable:
        raise ExportError(graph.not_exportable)
    spec, info = dep.inputs(module), dep.info(module)
    if dynamic and size is not None:
        raise ExportError("give either --size H W (a fixed-size graph) or --dynamic, not both.")
    traced = export_size(spec, size, dynamic, what)
    if dynamic:
        check_dynamic(module, what, spec.pad_multiple)
    exported = _Half(graph) if fp16 else graph
    args = example_inputs(traced, spec.ir_channels)
    program = _torch_export(exported, args, dynamic, spec.pad_multiple, what)
    out = Path(out)
    names = list(graph.output_names)
    try:
        onnx_program = torch.onnx.export(program, args, input_names=["vis", "ir"], output_names=names,
                                         opset_version=int(opset), dynamo=True, external_data=False, verbose=False)
        model = onnx_program.model_proto
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{what}: torch's ONNX exporter failed at opset {opset} ({type(exc).__name__}: {first}). "
                          f"Try the default --opset {DEFAULT_OPSET}, or run the model with ivtune.Predictor.from_run."
                          ) from exc
    fixed = None if dynamic else traced
    for key, value in _metadata(task, spec, info, names, fixed, fp16, source, what).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    tmp = out.with_name(f".{out.name}.check")
    atomic_write(tmp, lambda p: onnx.save(model, p))
    try:
        report = ExportReport(out, task, fixed, int(opset), fp16)
        report.checks = _parity(tmp, graph, spec, info, task, traced, dynamic, fp16)
        bad = [c for c in report.checks if c["enforced"] and c["max_abs_diff"] > c["limit"]]
        if bad:
            detail = "; ".join(f"{c['what']} at {c['size'][0]}x{c['size'][1]}: {c['max_abs_diff']:.3e} > "
                               f"{c['limit']:.0e}" for c in bad)
            raise ExportError(f"the exported graph does not reproduce {what} in onnxruntime: {detail}. Nothing was "
                              f"written to {out}.")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    report.seconds = time.perf_counter() - start
    return report


def _parity(path: Path, graph: nn.Module, spec: InputSpec, info: dict[str, Any], task: str, size: tuple[int, int],
            dynamic: bool, fp16: bool) -> list[dict[str, Any]]:
    """Run the written file once per size in onnxruntime (CPU) against the fp32 torch graph."""
    backend = OnnxBackend(path)
    torch_backend = TorchBackend(graph)
    m = spec.pad_multiple
    sizes = [size] + ([(size[0] + m, size[1] + 2 * m)] if dynamic else [])  # another size and aspect ratio
    rows = []
    for i, hw in enumerate(sizes):
        vis, ir = example_inputs(hw, spec.ir_channels, seed=i + 1)
        ctx = PredictContext(hw, hw)
        for row in _compare(task, torch_backend(vis, ir), backend(vis, ir), ctx, info, fp16):
            rows.append({**row, "size": list(hw)})
    return rows


def export_onnx(run: str | Path | Config, out: str | Path, *, size: Sequence[int] | None = None,
                dynamic: bool = False, opset: int = DEFAULT_OPSET, fp16: bool = False,
                overrides: Sequence[str] = ()) -> ExportReport:
    """Export a trained run to an ONNX file, verified (module docstring).

    Args:
        run: a run directory (or the config it was trained from).
        out: the ``.onnx`` file to write.
        size: the graph's fixed input (H, W), after the run's resize; multiples of the padding multiple. Default:
            the run's fixed resize (SOD's ``data.size``); required otherwise unless ``dynamic``.
        dynamic: symbolic height / width (multiples of the padding multiple); an error names the run when its model
            fixes sizes while tracing.
        opset: ONNX opset.
        fp16: half-precision weights and arithmetic inside, float32 inputs / outputs.
        overrides: ``key=value`` config overrides.

    Raises:
        ExportError: the method or head cannot export (named, with what to use instead), a size that is not a
            multiple (with the size to pad to), or onnxruntime's outputs differ from torch's.
    """
    from .run import load_run_model, resolve

    cfg, run_dir = resolve(run, list(overrides))
    return export_module(load_run_model(cfg, run_dir), out, size=size, dynamic=dynamic, opset=opset, fp16=fp16,
                         source=str(run_dir))
