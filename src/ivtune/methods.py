"""Training methods: which parts of the two-input network exist and which train.

A method is a small function that configures a freshly built :class:`IVBackbone`; the registry lets later
methods (baselines) plug in without touching the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .backbones.base import IVBackbone
from .errors import ConfigError


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    adapters: bool  # wrap every block with HA/IPA insertion points
    ir_input: bool  # build the IR patch embedding + prompt stem (False: the model ignores the IR image)
    configure: Callable[[IVBackbone], None]  # sets requires_grad


METHODS: dict[str, Method] = {}


def register_method(name: str, description: str, *, adapters: bool, ir_input: bool = True) -> Callable:
    def deco(fn: Callable[[IVBackbone], None]) -> Callable[[IVBackbone], None]:
        if name in METHODS:
            raise ConfigError(f"method {name!r} is already registered")
        METHODS[name] = Method(name, description, adapters, ir_input, fn)
        return fn

    return deco


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}. Available: {', '.join(sorted(METHODS))}.")
    return METHODS[name]


@register_method("iv-tuning", "frozen backbone; IR patch embed, prompt stem and HA/IPA in every block train",
                 adapters=True)
def _iv_tuning(backbone: IVBackbone) -> None:
    backbone.requires_grad_(False)
    for m in backbone.iv_modules():
        m.requires_grad_(True)


@register_method("full", "the IV-tuning network with every parameter trainable (full fine-tuning)", adapters=True)
def _full(backbone: IVBackbone) -> None:
    backbone.requires_grad_(True)


@register_method("vis-only-full", "the plain backbone on the visible image alone, fully fine-tuned (the authors' FFT "
                 "baseline; the IR image is ignored)", adapters=False, ir_input=False)
def _vis_only_full(backbone: IVBackbone) -> None:
    backbone.requires_grad_(True)
