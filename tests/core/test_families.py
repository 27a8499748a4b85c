"""The family registry: exact-class lookups, one module per family, and the names the errors list."""

from __future__ import annotations

import pytest
from timm.models.vision_transformer import Block, ResPostBlock, VisionTransformer

from ivtune import build_backbone
from ivtune.backbones.families import (
    FAMILIES,
    family_by_module,
    family_of_model,
    recipe_for,
    supported_block_names,
    supported_families_text,
)
from ivtune.builder import family_for_model_name
from ivtune.errors import UnsupportedModelError

from ..helpers import TINY


def test_registry_is_keyed_by_exact_class():
    assert [f.name for f in FAMILIES.values()] == ["vit", "eva", "swin", "swinv2", "hieradet"]
    assert all(cls is f.model_cls for cls, f in FAMILIES.items())

    class MyViT(VisionTransformer):  # may restructure the forward: no silent match
        pass

    class MyBlock(Block):
        pass

    assert family_of_model(MyViT(depth=1, embed_dim=32, num_heads=1, num_classes=0)) is None
    assert recipe_for(MyBlock(32, 1)) is None and recipe_for(Block(32, 1)).family == "vit"
    assert supported_block_names() == ["Block", "EvaBlock", "SwinTransformerBlock", "SwinTransformerV2Block",
                                       "MultiScaleBlock"]
    assert supported_families_text().startswith("vit (VisionTransformer, timm.models.vision_transformer), eva (Eva")


@pytest.mark.parametrize("key, family", [("vit", "vit"), ("dinov2_reg", "vit"), ("eva02", "eva"), ("swin", "swin")])
def test_each_family_lives_in_its_own_module(key, family):
    name, kwargs, _, _ = TINY[key]
    found = family_for_model_name(name)
    assert found.name == family and found is family_by_module(found.timm_module)
    assert type(found).__module__ == f"ivtune.backbones.{family}"
    model = build_backbone(name, **kwargs)
    assert model.family is found and found.hierarchical == (family == "swin")  # heads read the fact
    paths = [p for p, _ in found.stage_blocks(model.model)]
    assert paths == (["layers.0.blocks", "layers.1.blocks", "layers.2.blocks", "layers.3.blocks"]
                     if family == "swin" else ["blocks"])


def test_unsupported_block_points_at_the_family_module():
    name, kwargs, _, _ = TINY["vit"]
    with pytest.raises(UnsupportedModelError, match=r"Add a recipe to the vit family \(ivtune\.backbones\.vit\)"):
        build_backbone(name, block_fn=ResPostBlock, **kwargs)
