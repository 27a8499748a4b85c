"""The registry of supported backbone families, keyed by exact timm model class, and the lookups over it.

A family is matched by exact class, never ``isinstance``: a subclass may restructure the forward and must not
inherit a recipe or a loop silently. The block recipes are looked up the same way, over every family's table.
"""

from __future__ import annotations

from torch import nn

from ..inject.recipes import Recipe
from .eva import EVA
from .family import Family
from .hiera import HIERADET
from .swin import SWIN
from .swinv2 import SWINV2
from .vit import VIT

FAMILIES: dict[type[nn.Module], Family] = {f.model_cls: f for f in (VIT, EVA, SWIN, SWINV2, HIERADET)}
_RECIPES: dict[type[nn.Module], Recipe] = {cls: r for f in FAMILIES.values() for cls, r in f.recipes.items()}


def supported_families_text() -> str:
    """``vit (VisionTransformer, timm.models.vision_transformer), ...`` for error messages."""
    return ", ".join(f"{f.name} ({f.model_cls.__name__}, {f.timm_module})" for f in FAMILIES.values())


def family_by_module(module_name: str) -> Family | None:
    """The family whose timm module defines an entrypoint (checked before a model is built), or None."""
    return next((f for f in FAMILIES.values() if f.timm_module == module_name), None)


def family_of_model(model: nn.Module) -> Family | None:
    """The family of ``model``'s exact class, or None."""
    return FAMILIES.get(type(model))


def recipe_for(block: nn.Module) -> Recipe | None:
    """The residual recipe for ``block``'s exact class, or None."""
    return _RECIPES.get(type(block))


def supported_block_names() -> list[str]:
    """Class names of the blocks that have a recipe, in family order."""
    return [cls.__name__ for cls in _RECIPES]
