"""ivtune: IV-tuning (arXiv 2412.16654) on frozen timm backbones for infrared + visible tasks.

Public API:

- the model side: :func:`build_backbone`, :func:`count_parameters`, :func:`save_adapter`, :func:`load_adapter`,
  the training methods (:data:`METHODS`) and their config classes (:class:`IVTuningConfig`, :class:`LoRAConfig` ...);
- the run side (imported on first use, so ``import ivtune`` stays light): :func:`load_config`, :func:`train`,
  :func:`evaluate`, :func:`predict`, :class:`Predictor` (in-memory prediction, torch or ONNX),
  :func:`save_pretrained` / :func:`from_pretrained` / :func:`push_to_hub` (Hub-ready folders), and the task
  namespaces ``ivtune.tasks.seg`` / ``.sod`` / ``.det``.
"""

from typing import Any

from .backbones.base import IVBackbone
from .builder import build_backbone
from .checkpoint import load_adapter, save_adapter
from .methods import METHODS, AdaptFormerConfig, EmptyConfig, FrozenConfig, IVTuningConfig, LoRAConfig, VPTConfig
from .params import count_parameters
from .version import __version__

_RUN_SIDE = {"load_config", "train", "evaluate", "predict"}
# deployment and sharing (ivtune.runner.predictor / .hub): imported on first use as well
_DEPLOY_SIDE = {"Predictor": "predictor", "save_pretrained": "hub", "from_pretrained": "hub", "push_to_hub": "hub"}

__all__ = ["build_backbone", "count_parameters", "save_adapter", "load_adapter", "IVBackbone", "METHODS",
           "IVTuningConfig", "FrozenConfig", "VPTConfig", "AdaptFormerConfig", "LoRAConfig", "EmptyConfig",
           "load_config", "train", "evaluate", "predict", "Predictor", "save_pretrained", "from_pretrained",
           "push_to_hub", "__version__"]


def __getattr__(name: str) -> Any:
    # the runner pulls in Lightning and registers the tasks: only when a run-side name is used (PEP 562)
    if name in _RUN_SIDE:
        from . import runner

        return getattr(runner, name)
    if name in _DEPLOY_SIDE:
        import importlib

        return getattr(importlib.import_module(f".runner.{_DEPLOY_SIDE[name]}", __name__), name)
    raise AttributeError(f"module 'ivtune' has no attribute {name!r}")
