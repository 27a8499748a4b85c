"""Baselines (issue 6): every method builds for ViT / EVA-02 / Swin, trains exactly what its definition says, and
one optimiser step moves only those tensors."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn

from ivtune import build_backbone
from ivtune.errors import UnsupportedModelError
from ivtune.inject.adaptformer import AdaptFormerBlock, ParallelAdapter
from ivtune.inject.lora import LoRABlock, LoRALinear, LoRAUpdate
from ivtune.inject.vpt import PromptTokens, VPTBlock
from ivtune.inject.wrappers import AdaptedBlock, BlockWrapper
from ivtune.methods import METHODS
from ivtune.methods.dual_branch import DualBranchBackbone
from tests.helpers import TINY, pair, train_steps

FAMILIES = ["vit", "eva02", "swin"]
NEW = ["dual-branch", "frozen", "vpt", "adaptformer", "lora"]
UNSUPPORTED = {("vpt", "swin")}


def build(method: str, key: str, **kw):
    name, kwargs, _, _ = TINY[key]
    return build_backbone(name, method=method, **kwargs, **kw)


def ids(modules) -> set[int]:
    return {id(p) for m in modules for p in m.parameters()}


def trainable_ids(model: nn.Module) -> set[int]:
    return {id(p) for p in model.parameters() if p.requires_grad}


def ir_entry(model) -> list[nn.Module]:
    return [model.ir_patch_embed, model.prompt_stem]


def blocks(model) -> list[nn.Module]:
    return [b for _, container in model.family.stage_blocks(model.model) for b in container]


def one_per_block(model, wrapper: type, module: type) -> tuple[list[nn.Module], list[nn.Module]]:
    """Every block wrapped by exactly ``wrapper``, one ``module`` added per block, and those plus the IR entry are
    exactly what trains; returns (blocks, modules)."""
    blks = blocks(model)
    assert all(type(b) is wrapper for b in blks)
    added = [m for m in model.modules() if isinstance(m, module)]
    assert len(added) == len(blks)
    assert trainable_ids(model) == ids(ir_entry(model) + added)
    return blks, added


def test_registry_has_every_method():
    assert {"iv-tuning", "full", "vis-only-full", *NEW} <= set(METHODS)


@pytest.mark.parametrize("key", FAMILIES)
@pytest.mark.parametrize("method", NEW)
def test_builds_and_matches_the_single_backbone_geometry(method, key):
    if (method, key) in UNSUPPORTED:
        with pytest.raises(UnsupportedModelError, match=r"does not support the swin family.*vit, eva"):
            build(method, key)
        return
    model = build(method, key).eval()
    ref = build("iv-tuning", key)
    assert (model.out_channels, model.strides) == (ref.out_channels, ref.strides)
    vis, ir = pair(TINY[key][3])
    with torch.no_grad():
        outs = model(vis, ir)
    assert [o.shape[1] for o in outs] == model.out_channels
    assert all(torch.isfinite(o).all() for o in outs)


# ---------------------------------------------------------------------------------------- trainable sets
@pytest.mark.parametrize("key", FAMILIES)
def test_dual_branch_trains_two_independent_copies(key):
    torch.manual_seed(0)
    model = build("dual-branch", key)
    assert isinstance(model, DualBranchBackbone)
    assert all(p.requires_grad for p in model.parameters())
    assert model.iv_modules() == [] and model.ir_branch.iv_modules() == []
    vis_params, ir_params = list(model.model.parameters()), list(model.ir_branch.model.parameters())
    assert ids([model.model]).isdisjoint(ids([model.ir_branch.model]))  # no shared tensors
    assert all(torch.equal(a, b) for a, b in zip(vis_params, ir_params, strict=True))  # same start
    assert not any(isinstance(m, BlockWrapper) for m in model.modules())
    # exactly two copies of the timm model, nothing else
    assert sum(p.numel() for p in model.parameters()) == 2 * sum(p.numel() for p in vis_params)


@pytest.mark.parametrize("key", ["vit", "swin"])
def test_dual_branch_is_the_sum_of_the_two_plain_branches(key):
    torch.manual_seed(0)
    model = build("dual-branch", key).eval()
    torch.manual_seed(0)
    plain = build("vis-only-full", key).eval()
    with torch.no_grad():
        model.ir_branch.model.patch_embed.proj.weight.mul_(0.5)  # make the branches differ
        vis, ir = pair(TINY[key][3])
        got = model(vis, ir)
        ir_model = copy.deepcopy(plain)
        ir_model.model.patch_embed.proj.weight.mul_(0.5)
        ir3 = ir.expand(-1, 3, -1, -1)
        want = [a + b for a, b in zip(plain(vis, vis), ir_model(ir3, ir3), strict=True)]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("key", FAMILIES)
def test_frozen_trains_only_the_ir_entry(key):
    model = build("frozen", key)
    assert trainable_ids(model) == ids(ir_entry(model))
    assert not any(isinstance(m, BlockWrapper) for m in model.modules())


@pytest.mark.parametrize("key", ["vit", "eva02"])
def test_vpt_trains_ir_entry_and_prompt_tokens(key):
    model = build("vpt", key)
    _, prompts = one_per_block(model, VPTBlock, PromptTokens)
    dim = model.out_channels[0]
    assert all(p.tokens.shape == (1, 10, dim) for p in prompts)


@pytest.mark.parametrize("key", FAMILIES)
def test_adaptformer_trains_ir_entry_and_parallel_adapters(key):
    blks, adapters = one_per_block(build("adaptformer", key), AdaptFormerBlock, ParallelAdapter)
    for b, a in zip(blks, adapters, strict=True):
        dim = b.norm2.normalized_shape[0]
        assert (a.down.in_features, a.down.out_features, a.up.out_features, a.scale) == (dim, 64, dim, 0.1)


@pytest.mark.parametrize("key", FAMILIES)
def test_lora_trains_ir_entry_and_attention_low_rank_pairs(key):
    model = build("lora", key)
    blks = blocks(model)
    assert all(type(b) is LoRABlock for b in blks)
    for b in blks:
        attn = b.block.attn
        wrapped = [n for n, m in attn.named_children() if isinstance(m, LoRALinear)]
        qkv = ["qkv"] if attn.qkv is not None else ["q_proj", "k_proj", "v_proj"]
        assert sorted(wrapped) == sorted(qkv + ["proj"])
        assert not any(isinstance(m, LoRALinear) for m in b.block.mlp.modules())
    updates = [m for m in model.modules() if isinstance(m, LoRAUpdate)]
    assert trainable_ids(model) == ids(ir_entry(model) + updates)
    assert all(u.lora_A.shape[0] == 8 and u.scale == 1.0 and not u.lora_B.any() for u in updates)


@pytest.mark.parametrize("key", FAMILIES)
def test_iv_tuning_selection_unchanged(key):
    model = build("iv-tuning", key)
    points = [p for b in blocks(model) for p in (b.iv_attn, b.iv_mlp)]
    assert all(type(b) is AdaptedBlock for b in blocks(model))
    assert trainable_ids(model) == ids(ir_entry(model) + points)


# ---------------------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("key", FAMILIES)
@pytest.mark.parametrize("method", ["frozen", "adaptformer", "lora"])
def test_zero_init_equals_the_frozen_visible_model(method, key):
    # LoRA's B and AdaptFormer's up are zero at init; adapter_init="zeros" also zeroes the prompt stem's output
    name, kwargs, _, hw = TINY[key]
    torch.manual_seed(0)
    model = build_backbone(name, method=method, adapter_init="zeros", **kwargs).eval()
    torch.manual_seed(0)
    plain = build_backbone(name, method="vis-only-full", **kwargs).eval()
    vis, ir = pair(hw)
    with torch.no_grad():
        for a, b in zip(model(vis, ir), plain(vis, ir), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_vpt_prompts_reach_the_output_and_prefix_tokens_survive():
    name, kwargs, _, hw = TINY["dinov2_reg"]  # 5 prefix tokens
    model = build_backbone(name, method="vpt", **kwargs).eval()
    vis, ir = pair(hw)
    with torch.no_grad():
        a = model(vis, ir)
        for p in model.modules():
            if isinstance(p, PromptTokens):
                p.tokens.add_(torch.randn_like(p.tokens))  # not a constant: norm1 removes it
        b = model(vis, ir)
    assert [x.shape for x in a] == [y.shape for y in b]
    assert not torch.equal(a[-1], b[-1])  # DINOv2's layer scale (1e-5) keeps the change small


@pytest.mark.parametrize("key", FAMILIES)
@pytest.mark.parametrize("method", NEW)
def test_one_step_changes_only_trainable_tensors(method, key):
    if (method, key) in UNSUPPORTED:
        pytest.skip("unsupported combination (tested above)")
    model = build(method, key).train()
    # two steps: zero-initialised B / up get a gradient first, then A / down
    before = train_steps(model, TINY[key][3], 2, weight_decay=0.0)
    old = dict(before.named_parameters())
    for n, p in model.named_parameters():
        if p.requires_grad and re.search(r"model\.(fc_)?norm\.(weight|bias)$", n):
            assert p.grad is None  # timm's final norm sits after the last tap: unused by every method
        elif p.requires_grad:
            assert not torch.equal(p, old[n]), f"{method}: trainable {n} did not move"
        else:
            assert p.grad is None and torch.equal(p, old[n]), f"{method}: frozen {n} changed"


@pytest.mark.parametrize("method", ["dual-branch", "vpt", "lora", "adaptformer"])
def test_adapter_round_trip(method, tmp_path):
    from ivtune import load_adapter, save_adapter

    name, kwargs, _, hw = TINY["vit"]
    torch.manual_seed(0)
    model = build_backbone(name, method=method, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    save_adapter(model, tmp_path / "a")
    torch.manual_seed(0)  # the frozen part comes from the same (random) init
    loaded = load_adapter(tmp_path / "a").eval()
    vis, ir = pair(hw)
    with torch.no_grad():
        for a, b in zip(model(vis, ir), loaded(vis, ir), strict=True):
            assert torch.equal(a, b)
