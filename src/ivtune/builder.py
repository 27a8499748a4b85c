"""``build_backbone``: timm model + weights + a training method, in one call.

The top of the model side: it sits above ``ivtune.methods`` (what is built and what trains) and
``ivtune.backbones`` (the families and their loops), and nothing below imports it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import is_model, list_models, model_entrypoint

from .backbones.base import IVBackbone
from .backbones.families import family_by_module, family_of_model, supported_families_text
from .backbones.family import Family
from .backbones.weights import download_pretrained, load_into, read_weights_file, sha256_of
from .errors import ConfigError, UnsupportedModelError
from .methods import ADAPTER_INITS, MethodConfig, get_method
from .methods import method_config as _method_config  # build_backbone's keyword has the same name

__all__ = ["ADAPTER_INITS", "build_backbone", "family_for_model_name"]


def family_for_model_name(name: str) -> Family:
    """The backbone family of timm model ``name``, checked before anything is built.

    Raises:
        UnsupportedModelError: ``name`` is not a timm model (with the closest names), or its family has no
            IV-tuning support (listing the supported families).
    """
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


def _config_values(
    method: str, values: Mapping[str, Any] | MethodConfig | None, adapter_init: str | None,
    adapter_dropout: float | None,
) -> MethodConfig:
    """The method config, with the legacy ``adapter_init`` / ``adapter_dropout`` keywords folded in.

    A keyword fills the config field it names (``init`` / ``dropout``) unless ``values`` sets that field to something
    else (every field of a config object counts as set), which is an error. A method without the field ignores the
    keyword, as before configs existed (run configs pass ``adapter_dropout`` to every method).
    """
    if adapter_init is not None and adapter_init not in ADAPTER_INITS:
        raise ConfigError(f"adapter_init must be one of {ADAPTER_INITS}, got {adapter_init!r}.")
    if adapter_dropout is not None and not 0.0 <= adapter_dropout < 1.0:
        raise ConfigError(f"adapter_dropout must be in [0, 1), got {adapter_dropout}.")
    config = _method_config(method, values)  # validates the explicit values (and the method name) first
    if values is None:
        given: dict[str, Any] = {}
    else:
        given = dict(values) if isinstance(values, Mapping) else config.to_dict()
    names = {f.name for f in fields(config)}
    legacy = (("adapter_init", "init", adapter_init), ("adapter_dropout", "dropout", adapter_dropout))
    for keyword, field, value in legacy:
        if value is None or field not in names:
            continue
        if field in given and given[field] != value:
            raise ConfigError(
                f"{keyword}={value!r} contradicts method_config {field}={given[field]!r}. Set it in one place "
                f"(method_config {field!r} is the new one)."
            )
        given[field] = value
    return _method_config(method, given)


def build_backbone(
    name: str,
    *,
    method: str = "iv-tuning",
    method_config: Mapping[str, Any] | MethodConfig | None = None,
    pretrained: bool = False,
    weights: str | Path | None = None,
    out_indices: list[int] | tuple[int, ...] | None = None,
    adapter_init: str | None = None,
    adapter_dropout: float | None = None,
    **timm_kwargs: Any,
) -> IVBackbone:
    """Build a two-input (visible + infrared) backbone from a timm model name.

    Args:
        name: timm model name, e.g. ``swin_large_patch4_window12_384`` or ``vit_small_patch14_dinov2``.
        method: training method (``ivtune.METHODS``): ``iv-tuning`` (frozen backbone), ``full``, or a baseline
            (``vis-only-full``, ``dual-branch``, ``frozen``, ``vpt``, ``adaptformer``, ``lora``).
        method_config: the method's hyperparameters: its config object (e.g. ``LoRAConfig(rank=4)``) or a dict of
            its fields (``{"rank": 4}``); None: the defaults, which reproduce the published networks.
        pretrained: load timm's pretrained weights from the hub (needs network or a warm cache).
        weights: a local ``.safetensors`` / ``.pth`` state dict for this timm model; wins over ``pretrained``.
        out_indices: Swin: stages to return; ViT/EVA: the four blocks tapped for the pyramid.
        adapter_init: older spelling of the config's ``init``: ``default`` (the authors' init) or ``zeros`` (last
            projections zeroed: identity at start).
        adapter_dropout: older spelling of the config's ``dropout`` (IV-tuning's Hybrid Adapters); ignored by
            methods without adapter dropout.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``depth=2, embed_dim=64`` for a tiny test model,
            ``img_size=(480, 640)``, ``drop_path_rate=0.2``).

    Returns:
        The :class:`IVBackbone`; trainability set by ``method``. ``build_config`` records how it was built.
    """
    spec = get_method(method)
    config = _config_values(method, method_config, adapter_init, adapter_dropout)
    if "features_only" in timm_kwargs or "pretrained" in timm_kwargs:
        raise ConfigError("pass pretrained= directly and not features_only (ivtune builds the plain timm model).")
    family = family_for_model_name(name)
    if spec.families is not None and family.name not in spec.families:
        raise UnsupportedModelError(
            f"method {method!r} does not support the {family.name} family ({name}); it supports "
            f"{', '.join(spec.families)}. Pick another method or a backbone of those families."
        )
    kwargs = {**family.default_kwargs, "num_classes": 0, **timm_kwargs}
    try:
        model = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as e:
        raise ConfigError(f"timm rejected the kwargs {sorted(timm_kwargs)} for {name!r}: {e}") from e
    family = family_of_model(model)
    if family is None:
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

    backbone = spec.build(model, family, out_indices, config)
    spec.configure(backbone)
    if config.zero_init:
        with torch.no_grad():
            backbone.zero_init_adapters()
    backbone.build_config = {
        "name": name,
        "method": method,
        "method_config": config.to_dict(),
        "out_indices": list(backbone.out_indices),
        "timm_kwargs": dict(timm_kwargs),
        "pretrained": bool(pretrained and weights is None),
        "weights_file": Path(weights).name if weights is not None else None,
        "weights_sha256": weights_sha256,
    }
    return backbone
