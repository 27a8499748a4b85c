"""``build_backbone``: timm model + weights + IV-tuning, in one call."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import is_model, list_models, model_entrypoint

from ..errors import ConfigError, UnsupportedModelError
from .base import IVBackbone
from .families import family_by_module, family_of_model, supported_families_text
from .weights import download_pretrained, load_into, read_weights_file, sha256_of

ADAPTER_INITS = ("default", "zeros")


def _check_name(name: str):
    if not is_model(name):
        close = difflib.get_close_matches(name, list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnsupportedModelError(f"{name!r} is not a timm model name.{hint} See timm.list_models('*vit*').")
    family = family_by_module(model_entrypoint(name).__module__)
    if family is None:
        raise UnsupportedModelError(
            f"timm model {name!r} ({model_entrypoint(name).__module__}) has no IV-tuning recipe. "
            f"Supported families: {supported_families_text()}."
        )
    return family


def build_backbone(
    name: str,
    *,
    method: str = "iv-tuning",
    pretrained: bool = False,
    weights: str | Path | None = None,
    out_indices: list[int] | tuple[int, ...] | None = None,
    adapter_init: str = "default",
    adapter_dropout: float = 0.1,
    **timm_kwargs: Any,
) -> IVBackbone:
    """Build a two-input (visible + infrared) backbone from a timm model name.

    Args:
        name: timm model name, e.g. ``swin_large_patch4_window12_384`` or ``vit_small_patch14_dinov2``.
        method: training method (``ivtune.methods.METHODS``): ``iv-tuning`` (frozen backbone), ``full``, or a
            baseline (``vis-only-full``, ``dual-branch``, ``frozen``, ``vpt``, ``adaptformer``, ``lora``).
        pretrained: load timm's pretrained weights from the hub (needs network or a warm cache).
        weights: a local ``.safetensors`` / ``.pth`` state dict for this timm model; wins over ``pretrained``.
        out_indices: Swin: stages to return; ViT/EVA: the four blocks tapped for the pyramid.
        adapter_init: ``default`` (the authors' init) or ``zeros`` (last projections zeroed: identity at start).
        adapter_dropout: dropout inside every Hybrid Adapter (0.1 in the authors' code).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``depth=2, embed_dim=64`` for a tiny test model,
            ``img_size=(480, 640)``, ``drop_path_rate=0.2``).

    Returns:
        The :class:`IVBackbone`; trainability set by ``method``.
    """
    from ..methods import get_method  # methods import base; import here to keep module import order simple

    method_spec = get_method(method)
    if adapter_init not in ADAPTER_INITS:
        raise ConfigError(f"adapter_init must be one of {ADAPTER_INITS}, got {adapter_init!r}.")
    if "features_only" in timm_kwargs or "pretrained" in timm_kwargs:
        raise ConfigError("pass pretrained= directly and not features_only (ivtune builds the plain timm model).")
    family = _check_name(name)
    if method_spec.families is not None and family.name not in method_spec.families:
        raise UnsupportedModelError(
            f"method {method!r} does not support the {family.name} family ({name}); it supports "
            f"{', '.join(method_spec.families)}. Pick another method or a backbone of those families."
        )
    kwargs = {**family.default_kwargs, "num_classes": 0, **timm_kwargs}
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as e:
        raise ConfigError(f"timm rejected the kwargs {sorted(timm_kwargs)} for {name!r}: {e}") from e
    if family_of_model(model) is None:
        raise UnsupportedModelError(
            f"{name!r} builds a {type(model).__name__}, which has no IV-tuning recipe. "
            f"Supported families: {supported_families_text()}."
        )

    weights_sha256 = None
    if weights is not None:
        weights_sha256 = sha256_of(weights) if Path(weights).is_file() else None
        load_into(model, read_weights_file(weights), source=str(weights))
    elif pretrained:
        load_into(model, download_pretrained(model, name), source=f"the timm hub ({name})")

    if not 0.0 <= adapter_dropout < 1.0:
        raise ConfigError(f"adapter_dropout must be in [0, 1), got {adapter_dropout}.")
    if method_spec.build is not None:
        backbone = method_spec.build(model, family, out_indices)
    else:
        backbone = IVBackbone(model, family, out_indices, adapters=method_spec.adapters,
                              ir_input=method_spec.ir_input, adapter_kwargs={"dropout": adapter_dropout},
                              block_wrapper=method_spec.block_wrapper)
    method_spec.configure(backbone)
    if adapter_init == "zeros":
        with torch.no_grad():
            backbone.zero_init_adapters()
    backbone.build_config = {
        "name": name,
        "method": method,
        "out_indices": list(backbone.out_indices),
        "adapter_dropout": adapter_dropout,
        "timm_kwargs": dict(timm_kwargs),
        "pretrained": bool(pretrained and weights is None),
        "weights_file": Path(weights).name if weights is not None else None,
        "weights_sha256": weights_sha256,
    }
    return backbone
