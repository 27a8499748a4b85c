"""The backbone families IV-tuning supports, keyed by timm model class, and what differs between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timm.models.eva import Eva
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import nn


@dataclass(frozen=True)
class Family:
    """Facts about one timm model family.

    Attributes:
        name: short family name used in configs and messages.
        model_cls: the exact timm model class.
        timm_module: the module whose entrypoints build it (checked before building anything).
        default_kwargs: timm kwargs ivtune needs (dynamic / non-square input sizes); the caller may override.
        hierarchical: Swin-style stages (True) or a plain columnar ViT (False, needs a pseudo-pyramid).
    """

    name: str
    model_cls: type[nn.Module]
    timm_module: str
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    hierarchical: bool = False


FAMILIES: dict[str, Family] = {
    "vit": Family("vit", VisionTransformer, "timm.models.vision_transformer", {"dynamic_img_size": True}),
    "eva": Family("eva", Eva, "timm.models.eva", {"dynamic_img_size": True}),
    "swin": Family("swin", SwinTransformer, "timm.models.swin_transformer", {"strict_img_size": False}, True),
}


def supported_families_text() -> str:
    return ", ".join(f"{f.name} ({f.model_cls.__name__}, {f.timm_module})" for f in FAMILIES.values())


def family_by_module(module_name: str) -> Family | None:
    return next((f for f in FAMILIES.values() if f.timm_module == module_name), None)


def family_of_model(model: nn.Module) -> Family | None:
    """Match by exact class: a subclass may restructure the forward and must not inherit a recipe silently."""
    return next((f for f in FAMILIES.values() if type(model) is f.model_cls), None)
