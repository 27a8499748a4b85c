"""The fused forms of the IV-tuning modules compute exactly the docs/METHOD.md formulas (float64, tolerance 1e-10).

Each reference below restates one formula of docs/METHOD.md section 3 with plain torch ops and the module's own
layers, the way the authors' code computes it (grids, separate SFT, LN with its affine, a BatchNorm module, one
IPA at a time); the fused code is compared with it on outputs, on the gradients of every input and parameter, and
on the BatchNorm running statistics, in train mode (dropout drawn from the same seed) and in eval mode (BN folded).
The parameter set, its names and the adapter files do not change.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ivtune import build_backbone, load_adapter
from ivtune.checkpoint import trainable_state_dict
from ivtune.inject.wrappers import AdaptedBlock
from ivtune.modules import EMPG, SFT, HybridAdapter, HybridOperation, InsertionPoint, InternalPromptAdapter, SimAM
from ivtune.modules.adapters import prepare_prompts, prompt_forward
from ivtune.modules.ops import simam

from ..helpers import TINY, pair
from .test_token_layout import reference_grid as ref_ho  # section 3.2 with the module's own layers

TOL = dict(rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------- references
def grid(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    b, n, c = x.shape
    return x.transpose(1, 2).reshape(b, c, *hw)


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def ref_simam(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Section 3.1 on a (B, c, h, w) map."""
    n = x.shape[-2] * x.shape[-1]
    mu = x.mean(dim=(-2, -1), keepdim=True)
    d = (x - mu) ** 2
    v = d.sum(dim=(-2, -1), keepdim=True) / max(n - 1, 1)
    e = d / (4 * (v + eps)) + 0.5
    return x * torch.sigmoid(e)


def ref_sft(sft: SFT, x: torch.Tensor) -> torch.Tensor:
    """Section 3.3: the LayerNorm with its own affine, then ``* gamma + beta``."""
    return F.layer_norm(x, sft.norm.normalized_shape, sft.norm.weight, sft.norm.bias, sft.norm.eps) * sft.gamma \
        + sft.beta


def ref_ha(ha: HybridAdapter, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Section 3.4."""
    d = F.linear(ref_sft(ha.sft, x), ha.down.weight, ha.down.bias)
    d = flat(ref_ho(ha.mix, grid(d, hw)))
    d = F.dropout(F.gelu(d), ha.drop.p, ha.drop.training)
    return x + F.linear(d, ha.up.weight, ha.up.bias)


def ref_ipa(ipa: InternalPromptAdapter, z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Section 3.5."""
    d = F.linear(ref_sft(ipa.sft, z), ipa.down.weight, ipa.down.bias)
    d = flat(F.gelu(ref_simam(grid(d, hw), ipa.attn.eps)))
    return F.gelu(F.linear(d, ipa.up.weight, ipa.up.bias) * ipa.scale + ipa.shift)


def ref_point(point: InsertionPoint, x: torch.Tensor, z: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Section 3.9: ``HA(x) + IPA(z)``."""
    return ref_ha(point.adapter, x, hw) + ref_ipa(point.prompt, z, hw)


def ref_empg(empg: EMPG, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """Section 3.6."""
    return empg.out(ref_ho(empg.vis_mix, empg.vis_proj(vis)) + ref_simam(empg.ir_proj(ir)))


def ref_block(blk: AdaptedBlock, x, *, z, hw, num_prefix_tokens=0, **kw):
    """Sections 4.1 / 4.2: the block's residual recipe, then ``x_p <- HA(x_p) + IPA(z)`` after each residual."""
    p = num_prefix_tokens

    def adapt(point, x):
        return torch.cat([x[:, :p], ref_point(point, x[:, p:], z, hw)], dim=1)

    x = adapt(blk.iv_attn, blk.recipe.attn(blk.block, x, hw, **kw))
    return adapt(blk.iv_mlp, blk.recipe.mlp(blk.block, x, hw))


def reference_backbone(model, monkeypatch):
    """``model`` run by its own family loop, but with every fused part replaced by the references above."""
    ref = copy.deepcopy(model)
    stem = ref.prompt_stem

    def input_prompt(vis_tokens, ir, hw):
        ir_tokens = ref.ir_patch_embed(ir).flatten(1, 2)
        vis = grid(stem.norm(vis_tokens), hw)
        return flat(ref_empg(stem.empg, vis, grid(stem.norm(ir_tokens), hw)))

    def run_block(blk, x, **kwargs):
        kwargs.pop("prepared", None)
        return ref_block(blk, x, **kwargs)

    monkeypatch.setattr(ref, "input_prompt", input_prompt)
    monkeypatch.setattr(ref, "prepare_blocks", lambda blocks, z=None, hw=None: [{} for _ in blocks])
    monkeypatch.setattr(ref, "run_block", run_block)
    return ref


def randomise(module: torch.nn.Module) -> None:
    """Non-trivial values everywhere (gamma/scale != 1, beta/shift != 0, BN statistics away from 0/1)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.3 if p.dim() > 1 else 0.5)
                    + (1.0 if name.endswith(("gamma", "scale", "norm.weight", "bn.weight")) else 0.0))
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g, dtype=b.dtype) + 0.5)


def compare(fused_fn, ref_fn, fused_mod, ref_mod, inputs, train: bool, seed: int = 0) -> None:
    """Outputs, input and parameter gradients, and buffers of ``fused_fn`` vs ``ref_fn`` (same RNG seed)."""
    fused_mod.train(train)
    ref_mod.train(train)
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    rs = [x.detach().clone().requires_grad_(True) for x in inputs]
    torch.manual_seed(seed)
    out = fused_fn(*xs)
    torch.manual_seed(seed)
    want = ref_fn(*rs)
    outs, wants = (list(out), list(want)) if isinstance(out, list | tuple) else ([out], [want])
    for a, b in zip(outs, wants, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(w.shape, generator=g, dtype=w.dtype) for w in wants]  # a loss with a dense gradient
    sum((a * w).sum() for a, w in zip(outs, weights, strict=True)).backward()
    sum((b * w).sum() for b, w in zip(wants, weights, strict=True)).backward()
    for a, b in zip(xs, rs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, **TOL)
    ref_params = dict(ref_mod.named_parameters())
    for name, p in fused_mod.named_parameters():
        q = ref_params[name]
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), name
            continue
        torch.testing.assert_close(p.grad, q.grad, **TOL, msg=name)
    ref_buffers = dict(ref_mod.named_buffers())
    for name, b in fused_mod.named_buffers():
        torch.testing.assert_close(b, ref_buffers[name], rtol=1e-10, atol=0, msg=name)


def pair_of(module: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    module = module.double()
    randomise(module)
    return module, copy.deepcopy(module)


MODES = pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])


# ---------------------------------------------------------------------------------------------------- operators
@pytest.mark.parametrize("hw", [(5, 7), (1, 1)], ids=["5x7", "one-position"])
def test_simam_matches_formula(hw):
    x = torch.randn(2, 6, *hw, dtype=torch.float64)
    mod = SimAM()
    compare(mod, ref_simam, mod, mod, [x], train=True)
    tokens = flat(x)
    compare(mod.forward_tokens, lambda t: flat(ref_simam(grid(t, hw))), mod, mod, [tokens], train=True)


def test_simam_backward_passes_gradcheck():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: simam(t, (2, 3)), (x,))


@MODES
@pytest.mark.parametrize("channels", [64, 8, 3])  # 3: no depth-wise part (a quarter of 3 is 0)
def test_hybrid_operation_matches_formula(channels, train):
    op, ref = pair_of(HybridOperation(channels))
    hw = (5, 7)  # non-square: a swapped grid would show
    x = torch.randn(2, channels, *hw, dtype=torch.float64)
    compare(op, lambda t: ref_ho(ref, t), op, ref, [x], train)
    op, ref = pair_of(HybridOperation(channels))
    compare(lambda t: op.forward_tokens(t, hw), lambda t: flat(ref_ho(ref, grid(t, hw))), op, ref, [flat(x)], train)
    if train:  # the BN counted one batch per call, as nn.BatchNorm2d does
        assert int(op.bn.num_batches_tracked) == int(ref.bn.num_batches_tracked) == 1


def test_sft_matches_formula():
    sft, ref = pair_of(SFT(16))
    compare(sft, lambda t: ref_sft(ref, t), sft, ref, [torch.randn(2, 5, 16, dtype=torch.float64)], train=True)


@MODES
def test_hybrid_adapter_matches_formula(train):
    ha, ref = pair_of(HybridAdapter(24, hidden=16, dropout=0.3))
    hw = (4, 6)
    x = torch.randn(2, 24, 24, dtype=torch.float64)
    compare(lambda t: ha(t, hw), lambda t: ref_ha(ref, t, hw), ha, ref, [x], train)


@MODES
def test_internal_prompt_adapter_matches_formula(train):
    ipa, ref = pair_of(InternalPromptAdapter(24, hidden=8))
    hw = (4, 6)
    z = torch.randn(2, 24, 24, dtype=torch.float64)
    compare(lambda t: ipa(t, hw), lambda t: ref_ipa(ref, t, hw), ipa, ref, [z], train)


@MODES
def test_insertion_point_matches_formula(train):
    point, ref = pair_of(InsertionPoint(24, adapter_hidden=16, prompt_hidden=4, dropout=0.2))
    hw = (3, 8)
    x, z = (torch.randn(2, 24, 24, dtype=torch.float64) for _ in range(2))
    compare(lambda a, b: point(a, b, hw), lambda a, b: ref_point(ref, a, b, hw), point, ref, [x, z], train)


@MODES
def test_batched_prompts_equal_separate_adapters(train):
    # a Swin stage: K adapters on one shared z, in one LayerNorm / projection / SimAM / GELU / grouped projection
    mods, refs = pair_of(torch.nn.ModuleList([InternalPromptAdapter(24, hidden=8) for _ in range(5)]))
    hw = (4, 6)

    def fused(z):
        return list(prompt_forward(mods[0], prepare_prompts(list(mods)), z))

    compare(fused, lambda z: [ref_ipa(m, z, hw) for m in refs], mods, refs, [torch.randn(2, 24, 24,
                                                                                        dtype=torch.float64)], train)


@MODES
def test_empg_matches_formula(train):
    empg, ref = pair_of(EMPG(16, hidden=8))
    vis, ir = (torch.randn(2, 16, 5, 7, dtype=torch.float64) for _ in range(2))
    compare(empg, lambda a, b: ref_empg(ref, a, b), empg, ref, [vis, ir], train)


# ---------------------------------------------------------------------------------------------------- whole backbones
@MODES
@pytest.mark.parametrize("key", list(TINY))
def test_backbone_matches_formula(key, train, monkeypatch):
    # the backbone prepares all blocks at once (ViT / EVA) or a stage's prompts together (Swin); the reference runs
    # every insertion point on its own, as docs/METHOD.md section 4 writes it; prefix tokens and RoPE included
    name, kwargs, _, hw = TINY[key]
    torch.manual_seed(0)
    model = build_backbone(name, **{**kwargs, "drop_path_rate": 0.1}).double()
    randomise(model.prompt_stem)
    for m in model.iv_modules():
        randomise(m)
    ref = reference_backbone(model, monkeypatch)
    vis, ir = (t.double() for t in pair(hw))
    compare(model, ref, model, ref, [vis, ir], train)


def test_gradient_checkpointing_keeps_the_formula(monkeypatch):
    name, kwargs, _, hw = TINY["swin"]
    model = build_backbone(name, **kwargs).double()
    for m in model.iv_modules():
        randomise(m)
    ref = reference_backbone(model, monkeypatch)
    model.set_grad_checkpointing(True)  # per-block prompts, recomputed in backward
    vis, ir = (t.double() for t in pair(hw))
    compare(model, ref, model, ref, [vis, ir], train=False)


# ---------------------------------------------------------------------------------------------------- files
# every tensor of one insertion point as ivtune 0.1 saved it (adapter_model.safetensors), shapes for C = 64
POINT_TENSORS = {
    "adapter.down.bias": (64,), "adapter.down.weight": (64, 64), "adapter.mix.bn.bias": (64,),
    "adapter.mix.bn.num_batches_tracked": (), "adapter.mix.bn.running_mean": (64,), "adapter.mix.bn.running_var": (64,),
    "adapter.mix.bn.weight": (64,), "adapter.mix.dwconv.bias": (16,), "adapter.mix.dwconv.weight": (16, 1, 3, 3),
    "adapter.mix.fc1.bias": (64,), "adapter.mix.fc1.weight": (64, 64, 1, 1), "adapter.mix.fc2.bias": (64,),
    "adapter.mix.fc2.weight": (64, 64, 1, 1), "adapter.sft.beta": (64,), "adapter.sft.gamma": (64,),
    "adapter.sft.norm.bias": (64,), "adapter.sft.norm.weight": (64,), "adapter.up.bias": (64,),
    "adapter.up.weight": (64, 64), "prompt.down.bias": (8,), "prompt.down.weight": (8, 64), "prompt.scale": (64,),
    "prompt.sft.beta": (64,), "prompt.sft.gamma": (64,), "prompt.sft.norm.bias": (64,),
    "prompt.sft.norm.weight": (64,), "prompt.shift": (64,), "prompt.up.bias": (64,), "prompt.up.weight": (64, 8),
}
STEM_TENSORS = {
    "ir_patch_embed.proj.bias": (64,), "ir_patch_embed.proj.weight": (64, 3, 16, 16),
    "prompt_stem.empg.ir_proj.bias": (8,), "prompt_stem.empg.ir_proj.weight": (8, 64, 1, 1),
    "prompt_stem.empg.out.bias": (64,), "prompt_stem.empg.out.weight": (64, 8, 1, 1),
    "prompt_stem.empg.vis_mix.bn.bias": (8,), "prompt_stem.empg.vis_mix.bn.num_batches_tracked": (),
    "prompt_stem.empg.vis_mix.bn.running_mean": (8,), "prompt_stem.empg.vis_mix.bn.running_var": (8,),
    "prompt_stem.empg.vis_mix.bn.weight": (8,), "prompt_stem.empg.vis_mix.dwconv.bias": (2,),
    "prompt_stem.empg.vis_mix.dwconv.weight": (2, 1, 3, 3), "prompt_stem.empg.vis_mix.fc1.bias": (8,),
    "prompt_stem.empg.vis_mix.fc1.weight": (8, 8, 1, 1), "prompt_stem.empg.vis_mix.fc2.bias": (8,),
    "prompt_stem.empg.vis_mix.fc2.weight": (8, 8, 1, 1), "prompt_stem.empg.vis_proj.bias": (8,),
    "prompt_stem.empg.vis_proj.weight": (8, 64, 1, 1), "prompt_stem.norm.bias": (64,),
    "prompt_stem.norm.weight": (64,),
}


def release_01_tensors() -> dict[str, tuple[int, ...]]:
    """The tensors of the tiny ViT's adapter file as ivtune 0.1 wrote it (2 blocks, 2 insertion points each)."""
    out = dict(STEM_TENSORS)
    for i in range(2):
        for point in ("iv_attn", "iv_mlp"):
            out.update({f"model.blocks.{i}.{point}.{k}": s for k, s in POINT_TENSORS.items()})
    return out


def test_parameters_names_and_file_tensors_are_unchanged():
    name, kwargs, _, _ = TINY["vit"]
    model = build_backbone(name, **kwargs)
    tensors = trainable_state_dict(model)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == release_01_tensors()
    # the fused forms add no parameters and no saved buffers (the residual kernel is not persistent)
    assert not any("residual_kernel" in k for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        v.numel() for k, v in tensors.items() if "running" not in k and "num_batches" not in k)


def test_an_old_adapter_folder_loads_and_computes_the_formula(tmp_path, monkeypatch):
    # a folder as ivtune 0.1 wrote it: its tensors, written independently of today's modules
    name, kwargs, _, hw = TINY["vit"]
    g = torch.Generator().manual_seed(5)
    tensors = {k: (torch.randint(0, 9, s, generator=g) if k.endswith("num_batches_tracked") else
                   torch.rand(s, generator=g) + 0.5 if k.endswith("running_var") else
                   torch.randn(s, generator=g) * 0.2) for k, s in release_01_tensors().items()}
    folder = tmp_path / "old"
    folder.mkdir()
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "ivtune-adapter/1"})
    config = {
        "adapter_dropout": 0.1, "format": "ivtune-adapter/1", "ivtune_version": "0.1.0", "method": "iv-tuning",
        "name": name, "num_parameters": sum(t.numel() for t in tensors.values()), "num_tensors": len(tensors),
        "out_indices": [0, 0, 1, 1], "pretrained": False, "timm_kwargs": kwargs, "timm_version": "1.0.31",
        "torch_version": "2.14.1", "weights_file": None, "weights_sha256": None,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    model = load_adapter(folder).double().eval()
    loaded = trainable_state_dict(model)
    assert all(torch.equal(loaded[k].to(v.dtype), v.double() if v.is_floating_point() else v)
               for k, v in tensors.items())
    ref = reference_backbone(model, monkeypatch)
    vis, ir = (t.double() for t in pair(hw))
    with torch.no_grad():
        for a, b in zip(model(vis, ir), ref(vis, ir), strict=True):
            torch.testing.assert_close(a, b, **TOL)
