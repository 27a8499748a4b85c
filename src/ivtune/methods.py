"""Training methods: which parts of the two-input network exist and which train.

A method names how the backbone is built (IV-tuning's insertion points, another in-block design, no block
modules, or two branches) and a small function that sets ``requires_grad`` on the fresh backbone; the registry
lets baselines plug in without touching the factory.

Baselines (issue 6), all on the same timm model:

- ``dual-branch``: two full copies (VIS, IR), summed per level, both trainable.
- ``frozen``: the IV-tuning input side only (IR patch embedding + prompt stem); no block modules.
- ``vpt`` / ``adaptformer`` / ``lora``: the same IR input side as IV-tuning, only the in-block design differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from .backbones.base import IVBackbone
from .errors import ConfigError
from .inject.adaptformer import AdaptFormerBlock
from .inject.lora import LoRABlock
from .inject.vpt import VPT_FAMILIES, VPTBlock

# hyperparameters of the PETL baselines (their papers' defaults for ViT-B)
VPT_TOKENS = 10
ADAPTFORMER_BOTTLENECK, ADAPTFORMER_SCALE = 64, 0.1
LORA_RANK, LORA_ALPHA = 8, 8.0


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    adapters: bool  # wrap every block (with ``block_wrapper``, or IV-tuning's HA/IPA insertion points)
    ir_input: bool  # build the IR patch embedding + prompt stem (False: the model ignores the IR image)
    configure: Callable[[IVBackbone], None]  # sets requires_grad
    block_wrapper: Callable[..., nn.Module] | None = None  # (block, recipe, dim) -> BlockWrapper
    build: Callable[..., IVBackbone] | None = None  # (model, family, out_indices) -> backbone, instead of IVBackbone
    families: tuple[str, ...] | None = None  # supported backbone families (None: all)
    trains_backbone: bool = False  # every pretrained tensor trains: an adapter file holds the whole network


METHODS: dict[str, Method] = {}


def register_method(name: str, description: str, *, adapters: bool, ir_input: bool = True, **options: Any) -> Callable:
    def deco(fn: Callable[[IVBackbone], None]) -> Callable[[IVBackbone], None]:
        if name in METHODS:
            raise ConfigError(f"method {name!r} is already registered")
        METHODS[name] = Method(name, description, adapters, ir_input, fn, **options)
        return fn

    return deco


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}. Available: {', '.join(sorted(METHODS))}.")
    return METHODS[name]


def _train_added_modules(backbone: IVBackbone) -> None:
    """Freeze the timm model; train exactly the modules the backbone added (found structurally)."""
    backbone.requires_grad_(False)
    for m in backbone.iv_modules():
        m.requires_grad_(True)


def _train_everything(backbone: IVBackbone) -> None:
    backbone.requires_grad_(True)


register_method("iv-tuning", "frozen backbone; IR patch embed, prompt stem and HA/IPA in every block train",
                adapters=True)(_train_added_modules)
register_method("full", "the IV-tuning network with every parameter trainable (full fine-tuning)", adapters=True,
                trains_backbone=True)(_train_everything)
register_method("vis-only-full", "the plain backbone on the visible image alone, fully fine-tuned (the authors' FFT "
                "baseline; the IR image is ignored)", adapters=False, ir_input=False,
                trains_backbone=True)(_train_everything)


def _dual_branch(model: nn.Module, family: Any, out_indices: Any) -> IVBackbone:
    from .backbones.dual import DualBranchBackbone

    return DualBranchBackbone(model, family, out_indices)


register_method("dual-branch", "two copies of the pretrained backbone (VIS; IR repeated to 3 channels), summed at "
                "every output level, both fully trained", adapters=False, ir_input=False, build=_dual_branch,
                trains_backbone=True)(_train_everything)
register_method("frozen", "frozen backbone; only the IR patch embed and prompt stem train (no block modules)",
                adapters=False)(_train_added_modules)
register_method("vpt", f"frozen backbone + IR patch embed and prompt stem; deep VPT: {VPT_TOKENS} learnable tokens "
                "per block, dropped after it (ViT/EVA only)", adapters=True, families=VPT_FAMILIES,
                block_wrapper=partial(VPTBlock, num_tokens=VPT_TOKENS))(_train_added_modules)
register_method("adaptformer", f"frozen backbone + IR patch embed and prompt stem; AdaptFormer: a bottleneck-"
                f"{ADAPTFORMER_BOTTLENECK} MLP beside every block's MLP, scale {ADAPTFORMER_SCALE}", adapters=True,
                block_wrapper=partial(AdaptFormerBlock, bottleneck=ADAPTFORMER_BOTTLENECK, scale=ADAPTFORMER_SCALE),
                )(_train_added_modules)
register_method("lora", f"frozen backbone + IR patch embed and prompt stem; LoRA rank {LORA_RANK}, alpha "
                f"{LORA_ALPHA:g} on every attention's qkv and output projection", adapters=True,
                block_wrapper=partial(LoRABlock, rank=LORA_RANK, alpha=LORA_ALPHA))(_train_added_modules)
