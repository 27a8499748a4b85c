"""Adapter-only checkpoints in the peft style: ``adapter_config.json`` + ``adapter_model.safetensors``.

Only the trainable tensors (plus the running statistics of BatchNorms inside trainable modules) are written,
so an IV-tuning checkpoint is a few percent of the backbone; the frozen weights come from timm / the weights file.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .backbones.base import IVBackbone
from .backbones.weights import sha256_of
from .builder import build_backbone
from .errors import CheckpointMismatchError, key_mismatch_detail
from .methods import get_method
from .version import __version__

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "ivtune-adapter/1"


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus the buffers of modules whose parameters all train (e.g. adapter BN stats)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    for mod_name, mod in model.named_modules():
        params = list(mod.parameters(recurse=False))
        if params and all(p.requires_grad for p in params):
            prefix = f"{mod_name}." if mod_name else ""
            names.update(prefix + b for b, _ in mod.named_buffers(recurse=False))
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items() if k in names and v is not None}


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: a killed process never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Write ``directory/adapter_config.json`` and ``directory/adapter_model.safetensors``; returns the directory.

    The config is the backbone's ``build_config`` (timm name and kwargs, method and its ``method_config``, weights
    file and hash) plus versions and counts, with sorted keys.
    """
    if not isinstance(model, IVBackbone):
        raise TypeError(f"save_adapter expects an IVBackbone (from ivtune.build_backbone), got {type(model).__name__}")
    directory = Path(directory)
    tensors = {k: v.contiguous().cpu() for k, v in trainable_state_dict(model).items()}
    config = {
        **model.build_config,
        "format": FORMAT,
        "ivtune_version": __version__,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "num_tensors": len(tensors),
        "num_parameters": int(sum(v.numel() for v in tensors.values())),
    }
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": FORMAT}))
    atomic_write(directory / CONFIG_NAME,
                 lambda p: Path(p).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))
    return directory


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointMismatchError(f"{path} not found: is {directory} a directory written by save_adapter?")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} has format {config.get('format')!r}, expected {FORMAT!r}.")
    return config


def load_adapter(
    directory: str | Path,
    *,
    weights: str | Path | None = None,
    pretrained: bool | None = None,
    map_location: str | torch.device = "cpu",
) -> IVBackbone:
    """Rebuild the backbone described by ``directory`` and load its adapter tensors strictly.

    Args:
        directory: written by :func:`save_adapter`.
        weights: the frozen backbone's weights file; required when the adapter was trained on one
            (its sha256 is checked against the config).
        pretrained: load timm hub weights; defaults to what the adapter was trained with.
        map_location: device the adapter tensors are read to.

    Raises:
        CheckpointMismatchError: no adapter config, another format, the wrong backbone file, or tensors that do
            not match the rebuilt model (every mismatch named).
    """
    directory = Path(directory)
    config = read_adapter_config(directory)
    whole_network = get_method(config.get("method", "iv-tuning")).trains_backbone  # the file holds every tensor
    want_sha = config.get("weights_sha256")
    if weights is not None and want_sha:
        got = sha256_of(weights)
        if got != want_sha:
            raise CheckpointMismatchError(
                f"{weights} (sha256 {got[:12]}...) is not the backbone file this adapter was trained on "
                f"({config.get('weights_file')}, sha256 {want_sha[:12]}...). Pass the original file."
            )
    elif weights is None and config.get("weights_file") and not whole_network:
        raise CheckpointMismatchError(
            f"the adapter in {directory} was trained on the frozen backbone file {config['weights_file']!r} "
            f"(sha256 {want_sha}); pass weights=PATH to that file."
        )
    if pretrained is None:
        pretrained = bool(config.get("pretrained")) and weights is None and not whole_network
    model = build_backbone(
        config["name"],
        method=config["method"],
        pretrained=pretrained,
        weights=weights,
        out_indices=config.get("out_indices"),
        **_method_arguments(config),
        **config.get("timm_kwargs", {}),
    )
    load_trainable(model, load_file(str(directory / WEIGHTS_NAME), device=str(map_location)),
                   source=str(directory / WEIGHTS_NAME))
    return model


def _method_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """``build_backbone`` keywords for the method's hyperparameters.

    Folders of ivtune 0.1 have no ``method_config``: their only recorded hyperparameter is the top-level
    ``adapter_dropout``, and every other one had today's default, which ``method_config=None`` reproduces.
    """
    if "method_config" in config:
        return {"method_config": config["method_config"]}
    return {"adapter_dropout": config.get("adapter_dropout", 0.1)}


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load tensors saved by :func:`trainable_state_dict`, failing with every mismatch named."""
    expected = trainable_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
                    for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape)
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(f"{source} does not match the model: "
                                      + key_mismatch_detail(missing, unexpected, shapes))
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:  # cannot happen after the check above; keep the guarantee explicit
        warnings.warn(f"unexpected keys while loading {source}: {result.unexpected_keys}", stacklevel=2)
