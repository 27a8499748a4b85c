"""``ivtune.Predictor``: a trained run as an in-memory model, in torch or over an exported ONNX graph.

::

    from ivtune import Predictor

    p = Predictor.from_run("runs/msrs_swin_l_segformer")           # or Predictor.from_onnx("model.onnx")
    result = p.predict("vis/00004N.png", "ir/00004N.png")           # paths, PIL images, numpy arrays or tensors
    result.mask                                                     # (H, W) class ids at the input size

Inputs: a visible image as a path, a PIL image, a numpy ``(H, W, 3)`` array or a tensor ``(3, H, W)``; an infrared
image as a path, a PIL image, a numpy ``(H, W)`` / ``(H, W, 1)`` array or a tensor ``(1, H, W)`` / ``(H, W)``
(3-channel IR is converted to grey, as the file readers do). ``uint8`` values are 0-255; floating-point values are
taken as [0, 1]. A list of pairs (or a 4-D batch) gives a list of results; any size works: the run's evaluation
transform (resize rule, normalisation) is applied, the pair is padded to the patch multiple and the outputs are
cropped and resized back to the input size (:mod:`ivtune.engine.predict`).

Results are typed per task: :class:`~ivtune.tasks.seg.task.SegPrediction` (``mask``, ``probabilities`` with
``predict(..., probabilities=True)``), :class:`~ivtune.tasks.sod.task.SODPrediction` (``saliency``),
:class:`~ivtune.tasks.det.task.DetPrediction` (``boxes`` / ``scores`` / ``labels`` in input pixels;
``predict(..., score_thresh=0.3)`` filters).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..data.io import read_gray, read_rgb
from ..engine.predict import Deployment, InputSpec, PredictContext
from ..errors import ConfigError, InputShapeError
from ..tasks.det import task as det_task
from ..tasks.seg import task as seg_task
from ..tasks.sod import task as sod_task

# task -> its deployment hooks (the task slices define them beside their TASK)
DEPLOYMENTS: dict[str, Deployment] = {"seg": seg_task.DEPLOY, "sod": sod_task.DEPLOY, "det": det_task.DEPLOY}
PRECISIONS = {"32": None, "16": torch.float16, "bf16": torch.bfloat16}
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, PIL's RGB -> L (what the IR file reader does)


def deployment_of(task: str) -> Deployment:
    if task not in DEPLOYMENTS:
        raise ConfigError(f"task {task!r} has no deployment hooks; tasks with a Predictor: {', '.join(DEPLOYMENTS)}.")
    return DEPLOYMENTS[task]


# ------------------------------------------------------------------------------------------------ inputs
def _unit_float(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    if not x.is_floating_point():
        raise InputShapeError(f"{what} has dtype {x.dtype}; give uint8 (0-255) or floating point (0-1) values.")
    x = x.float()
    if x.numel() and (float(x.min()) < -1e-3 or float(x.max()) > 1.0 + 1e-3):
        raise InputShapeError(f"{what} is floating point with values in [{float(x.min()):.3g}, {float(x.max()):.3g}]; "
                              "floating-point images are taken as [0, 1]: divide 0-255 values by 255 (or pass uint8).")
    return x


def as_vis(x: Any) -> torch.Tensor:
    """A visible image (path, PIL image, numpy (H, W, 3), tensor (3, H, W)) -> (3, H, W) float in [0, 1]."""
    if isinstance(x, (str, Path)):
        x = read_rgb(x)
    elif hasattr(x, "convert") and hasattr(x, "size"):  # a PIL image
        x = np.asarray(x.convert("RGB"))
    if isinstance(x, np.ndarray):
        if x.ndim != 3 or x.shape[2] != 3:
            raise InputShapeError(f"a visible numpy image must be (H, W, 3) RGB, got shape {x.shape}. Drop an alpha "
                                  "channel with x[..., :3]; repeat a grey image to 3 channels.")
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    if not isinstance(x, torch.Tensor):
        raise InputShapeError(f"cannot read a visible image from {type(x).__name__}; give a path, a PIL image, a "
                              "numpy (H, W, 3) array or a (3, H, W) tensor.")
    if x.ndim != 3 or x.shape[0] != 3:
        raise InputShapeError(f"a visible tensor must be (3, H, W), got shape {tuple(x.shape)}.")
    return _unit_float(x.detach().cpu(), "the visible image")


def as_ir(x: Any) -> torch.Tensor:
    """An infrared image (path, PIL image, numpy (H, W) / (H, W, 1|3), tensor (H, W) / (1|3, H, W)) -> (1, H, W)
    float in [0, 1]; 3 channels are converted to grey (ITU-R 601-2 luma, as PIL and the IR file reader do)."""
    if isinstance(x, (str, Path)):
        x = read_gray(x)
    elif hasattr(x, "convert") and hasattr(x, "size"):
        x = np.asarray(x.convert("L"))
    if isinstance(x, np.ndarray):
        if x.ndim == 3 and x.shape[2] in (1, 3):
            x = x.transpose(2, 0, 1)
        elif x.ndim != 2:
            raise InputShapeError(f"an infrared numpy image must be (H, W), (H, W, 1) or (H, W, 3), got {x.shape}.")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise InputShapeError(f"cannot read an infrared image from {type(x).__name__}; give a path, a PIL image, a "
                              "numpy (H, W) array or a (1, H, W) tensor.")
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise InputShapeError(f"an infrared tensor must be (H, W), (1, H, W) or (3, H, W), got {tuple(x.shape)}.")
    x = _unit_float(x.detach().cpu(), "the infrared image")
    if x.shape[0] == 3:
        x = sum(w * c for w, c in zip(_LUMA, x, strict=True))[None]
    return x


def _is_batch(vis: Any) -> bool:
    if isinstance(vis, (list, tuple)):
        return True
    return isinstance(vis, (np.ndarray, torch.Tensor)) and vis.ndim == 4


# ------------------------------------------------------------------------------------------------ backends
class TorchBackend:
    """The task graph in torch: ``(vis, ir) -> {name: tensor}`` on ``device``, under autocast for 16-bit."""

    fixed_size: tuple[int, int] | None = None

    def __init__(self, graph: torch.nn.Module, device: str | torch.device = "cpu", precision: str = "32") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
        self.device = torch.device(device)
        self.dtype = PRECISIONS[precision]
        self.graph = graph.to(self.device).eval()
        self.names = tuple(graph.output_names)

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        cast = (torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None
                else contextlib.nullcontext())
        with torch.inference_mode(), cast:
            out = self.graph(vis.to(self.device), ir.to(self.device))
        return {n: (o.float() if o.is_floating_point() else o).cpu() for n, o in zip(self.names, out, strict=True)}


# ------------------------------------------------------------------------------------------------ predictor
class Predictor:
    """A trained model behind one ``predict(vis, ir)``; build it with :meth:`from_run`, :meth:`from_pretrained` or
    :meth:`from_onnx` (module docstring for inputs and results).

    Attributes:
        task: ``seg``, ``sod`` or ``det``.
        spec: the input contract (:class:`ivtune.engine.predict.InputSpec`).
        info: JSON-ready facts of the run (``classes``, palette, detector post-processing parameters).
        source: where the model came from (a run directory, a folder, an ONNX file).
    """

    def __init__(self, task: str, spec: InputSpec, info: dict[str, Any], backend: Any, source: str = "") -> None:
        self.task, self.spec, self.info, self.backend, self.source = task, spec, info, backend, source
        self.deployment = deployment_of(task)

    @property
    def classes(self) -> list[str]:
        return list(self.info.get("classes", []))

    def __repr__(self) -> str:
        return (f"Predictor(task={self.task!r}, backend={type(self.backend).__name__}, source={self.source!r}, "
                f"classes={len(self.classes)})")

    # -------------------------------------------------------------- builders
    @classmethod
    def from_module(cls, module: Any, device: str | torch.device = "cpu", precision: str = "32",
                    source: str = "") -> Predictor:
        """A Predictor over a task module (``IVTaskModule``: a run's model with its ``cfg``) in torch."""
        task = module.cfg.task
        dep = deployment_of(task)
        backend = TorchBackend(dep.graph(module.eval()), device, precision)
        return cls(task, dep.inputs(module), dep.info(module), backend, source)

    @classmethod
    def from_run(cls, run: str | Path | Config, device: str | torch.device = "cpu", precision: str = "32",
                 overrides: Sequence[str] = ()) -> Predictor:
        """The trained model of a run directory (``checkpoints/model.safetensors``, verified) in torch.

        Args:
            run: a run directory written by ``ivtune train`` (or the config it was trained from).
            device: torch device (``cpu``, ``cuda:0`` ...).
            precision: ``32``, ``16`` or ``bf16`` (autocast).
            overrides: ``key=value`` config overrides, as ``--set`` takes them.
        """
        from .run import load_run_model, resolve

        cfg, run_dir = resolve(run, list(overrides))
        return cls.from_module(load_run_model(cfg, run_dir), device, precision, source=str(run_dir))

    @classmethod
    def from_pretrained(cls, dir_or_hub_id: str | Path, device: str | torch.device = "cpu", precision: str = "32",
                        **kwargs: Any) -> Predictor:
        """A folder written by :func:`ivtune.save_pretrained` for a run (local, or a Hub id); see
        :func:`ivtune.runner.hub.from_pretrained` for ``kwargs``."""
        from .hub import from_pretrained

        module = from_pretrained(dir_or_hub_id, **kwargs)
        if isinstance(module, torch.nn.Module) and not hasattr(module, "cfg"):
            raise ConfigError(f"{dir_or_hub_id} holds a backbone adapter without a task head; a Predictor needs a "
                              "run's folder (ivtune.save_pretrained(RUN_DIR, folder)).")
        return cls.from_module(module, device, precision, source=str(dir_or_hub_id))

    @classmethod
    def from_onnx(cls, path: str | Path, providers: Sequence[str] | None = None,
                  threads: int | None = None) -> Predictor:
        """A Predictor over an ONNX file written by ``ivtune export`` (onnxruntime; the preprocessing and the
        post-processing come from the file's metadata).

        Raises:
            OnnxModelError: the file is missing, is not ONNX, or was not written by ``ivtune export``.
        """
        from .onnx_model import OnnxBackend, read_metadata

        backend = OnnxBackend(path, providers=providers, threads=threads)
        meta = read_metadata(backend.metadata, path)
        return cls(meta["task"], InputSpec.from_dict(meta["inputs"]), meta["info"], backend, source=str(path))

    # -------------------------------------------------------------- prediction
    def prepare(self, vis: Any, ir: Any) -> tuple[torch.Tensor, torch.Tensor, PredictContext]:
        """One pair -> the graph's inputs and the context of its post-processing."""
        v, r = as_vis(vis), as_ir(ir)
        if v.shape[-2:] != r.shape[-2:]:
            raise InputShapeError(f"vis is {v.shape[-2]}x{v.shape[-1]} but ir is {r.shape[-2]}x{r.shape[-1]}; "
                                  "register / resize the IR image to the visible one.")
        vis_in, ir_in, size = self.spec(v, r, pad_to=self.backend.fixed_size)
        return vis_in, ir_in, PredictContext(tuple(v.shape[-2:]), size)

    def predict_one(self, vis: Any, ir: Any, **options: Any) -> Any:
        vis_in, ir_in, ctx = self.prepare(vis, ir)
        return self.deployment.postprocess(self.backend(vis_in, ir_in), ctx, self.info, **options)

    def predict(self, vis: Any, ir: Any, **options: Any) -> Any:
        """The typed result of one pair, or a list of them for a batch (a list of pairs' images or a 4-D array).

        Options: ``probabilities=True`` (segmentation), ``score_thresh=`` (detection).
        """
        if not _is_batch(vis):
            return self.predict_one(vis, ir, **options)
        if len(vis) != len(ir):
            raise InputShapeError(f"give one infrared image per visible image, got {len(vis)} and {len(ir)}.")
        return [self.predict_one(v, r, **options) for v, r in zip(vis, ir, strict=True)]

