"""An ONNX file written by ``ivtune export``, read back: the onnxruntime session and the ``ivtune.*`` metadata.

Both :mod:`ivtune.runner.export` (which writes the file and checks it in onnxruntime) and
:meth:`ivtune.Predictor.from_onnx` (which serves it) read files through here, so neither imports the other for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import IVTuneError

FORMAT = "ivtune-onnx/1"  # the ivtune.format metadata value of every exported file


class OnnxModelError(IVTuneError, ValueError):
    """An ONNX file that is missing, unreadable, or not written by ``ivtune export``."""


class OnnxBackend:
    """An exported graph in onnxruntime: ``(vis, ir) -> {name: tensor}``; a fixed-size graph sets ``fixed_size``."""

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f"{path} not found: pass an .onnx file written by `ivtune export RUN --format onnx "
                                 "--out FILE`.")
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxModelError("onnxruntime is not installed: pip install 'ivtune[export]'.") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf / NotImplemented types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxModelError(f"{path} cannot be loaded as an ONNX model ({first}). The file is corrupt, "
                                 "truncated or not ONNX: export the run again with `ivtune export`.") from exc
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != {"vis", "ir"}:
            raise OnnxModelError(f"{path} takes inputs {sorted(inputs)}, not 'vis' and 'ir': it was not written by "
                                 "`ivtune export`.")
        h, w = inputs["vis"].shape[-2:]
        self.fixed_size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.input_dtype = np.float16 if inputs["vis"].type == "tensor(float16)" else np.float32
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> dict[str, torch.Tensor]:
        feed = {"vis": vis.numpy().astype(self.input_dtype), "ir": ir.numpy().astype(self.input_dtype)}
        out = self.session.run(None, feed)
        return {n: torch.from_numpy(np.asarray(o, dtype=np.float32) if np.issubdtype(o.dtype, np.floating) else o)
                for n, o in zip(self.names, out, strict=True)}


def read_metadata(meta: dict[str, str], path: str | Path) -> dict[str, Any]:
    """The ``ivtune.*`` metadata of an exported file as ``{task, inputs, info, ...}``."""
    if meta.get("ivtune.format") != FORMAT:
        raise OnnxModelError(f"{path} has no ivtune metadata (ivtune.format = {meta.get('ivtune.format')!r}, "
                             f"expected {FORMAT!r}): a foreign ONNX model or one from another ivtune format. "
                             "Export the run with `ivtune export RUN --format onnx --out FILE`.")
    try:
        return {"task": meta["ivtune.task"], "inputs": json.loads(meta["ivtune.inputs"]),
                "info": json.loads(meta["ivtune.info"]), "version": meta.get("ivtune.version")}
    except (KeyError, ValueError) as exc:
        raise OnnxModelError(f"{path}: the ivtune metadata is incomplete or not JSON ({exc}); export it again."
                             ) from exc
