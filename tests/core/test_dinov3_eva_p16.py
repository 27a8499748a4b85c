"""DINOv3 (timm ``Eva`` with registers and RoPE) and the paper's EVA-02-L at patch 16 from patch-14 weights.

docs/METHOD.md sections 4.1 and 7. The shared backbone contract (identity, training, files) is in
``test_beyond_paper.py``.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed, resample_patch_embed

from ivtune import build_backbone, count_parameters
from ivtune.backbones.eva import EVA
from ivtune.backbones.weights import load_into, read_weights_file
from ivtune.cli import main

from ..helpers import pair
from .beyond_paper import TINY_BEYOND


def test_dinov3_prefix_tokens_and_rope_reach_the_blocks():
    name, kwargs, sizes = TINY_BEYOND["dinov3"]
    model = build_backbone(name, **kwargs).eval()
    assert model.family is EVA and model.num_prefix_tokens == 5  # class token + 4 registers
    seen = []
    for blk in model.model.blocks:
        blk.register_forward_pre_hook(lambda _m, _a, kw: seen.append(kw), with_kwargs=True)
    with torch.no_grad():
        model(*pair(sizes[1]))
    hw = (sizes[1][0] // 16, sizes[1][1] // 16)
    assert [kw["num_prefix_tokens"] for kw in seen] == [5, 5] and all(kw["hw"] == hw for kw in seen)
    assert all(kw["rope"] is not None for kw in seen)  # DINOv3 rotates; no absolute position table
    assert model.model.pos_embed is None


# (timm name, trainable, frozen): ViT/EVA at patch 16, 312 C + 17,360 per block, IR embed 769 C, EMPG 25 C + 196, LN 2C
DINOV3 = [
    ("vit_small_patch16_dinov3", 1_951_876, 21_586_944),
    ("vit_base_patch16_dinov3", 3_695_236, 85_641_216),
    ("vit_large_patch16_dinov3", 8_899_652, 303_079_424),
]


@pytest.mark.parametrize("name, trainable, frozen", DINOV3, ids=[d[0] for d in DINOV3])
def test_dinov3_exact_counts_on_meta(name, trainable, frozen):
    with torch.device("meta"):
        model = build_backbone(name)
    c = model.model.patch_embed.proj.out_channels
    assert len(model.model.blocks) * (312 * c + 17_360) + 769 * c + 25 * c + 196 + 2 * c == trainable
    counts = count_parameters(model)
    assert (counts["trainable"], counts["frozen"]) == (trainable, frozen)


@pytest.mark.parametrize("kwargs, trainable", [([], 8_715_332), (["--timm-kwarg", "patch_size=16"], 8_899_652)])
def test_cli_eva02_large_patch_size(kwargs, trainable):
    name = "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k"
    result = CliRunner().invoke(main, ["params", name, *kwargs, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["trainable"] == trainable
    assert data.get("timm_kwargs", {}) == ({"patch_size": 16} if kwargs else {})


def test_cli_timm_kwargs_are_yaml_and_repeatable():
    args = ["params", "eva02_large_patch14_224.mim_m38m", "--timm-kwarg", "patch_size=16",
            "--timm-kwarg", "img_size=[384, 384]"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "timm       patch_size=16, img_size=[384, 384]" in result.output and "8,899,652" in result.output


@pytest.mark.parametrize("arg, message", [
    ("patch_size", "expected KEY=VALUE"),
    ("=16", "expected KEY=VALUE"),
    ("img_size=[384, 384", "cannot read the value"),
])
def test_cli_bad_timm_kwarg_is_a_usage_error(arg, message):
    result = CliRunner().invoke(main, ["params", "vit_small_patch16_224", "--timm-kwarg", arg])
    assert result.exit_code == 2 and message in result.output and "--timm-kwarg" in result.output
    twice = CliRunner().invoke(main, ["params", "vit_small_patch16_224", "--timm-kwarg", "depth=2",
                                      "--timm-kwarg", "depth=3"])
    assert twice.exit_code == 2 and "'depth' is given twice" in twice.output


def test_cli_kwarg_timm_rejects_is_one_line():
    result = CliRunner().invoke(main, ["params", "vit_small_patch16_224", "--timm-kwarg", "no_such_kwarg=1"])
    assert result.exit_code == 2 and "timm rejected the kwargs ['no_such_kwarg']" in result.output
    assert "Traceback" not in result.output


def test_patch14_weights_file_loads_into_the_patch16_model(tmp_path):
    """timm's EVA checkpoint filter resamples the patch kernel (14 -> 16) and the position table on load."""
    name, kwargs, sizes = TINY_BEYOND["eva02_p16"]
    p14_kwargs = {k: v for k, v in kwargs.items() if k != "patch_size"}
    source = timm.create_model(name, num_classes=0, **p14_kwargs)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    assert state["patch_embed.proj.weight"].shape[-2:] == (14, 14) and state["pos_embed"].shape[1] == 1 + 16 * 16
    path = tmp_path / "eva02_p14.safetensors"
    save_file(state, str(path))

    model = build_backbone(name, weights=path, adapter_init="zeros", **kwargs).eval()
    # the timm model's own names (the IV-tuning wrappers hold each block as ``blocks.i.block``)
    loaded = {k.replace(".block.", "."): v for k, v in model.model.state_dict().items() if ".iv_" not in k}
    assert set(loaded) == set(state)
    want_kernel = resample_patch_embed(state["patch_embed.proj.weight"], [16, 16], verbose=False)
    want_pos = resample_abs_pos_embed(state["pos_embed"], new_size=[14, 14], old_size=[16, 16], num_prefix_tokens=1)
    assert loaded["patch_embed.proj.weight"].shape[-2:] == (16, 16)
    assert torch.equal(loaded["patch_embed.proj.weight"], want_kernel)
    assert torch.equal(loaded["pos_embed"], want_pos)
    for k, v in state.items():  # everything else is the file's tensor, untouched
        if k not in ("patch_embed.proj.weight", "pos_embed"):
            assert torch.equal(loaded[k], v), k

    plain = timm.create_model(name, num_classes=0, dynamic_img_size=True, **kwargs).eval()
    load_into(plain, read_weights_file(path), source=str(path))  # timm's own patch-16 model, the same file
    assert torch.equal(plain.patch_embed.proj.weight, want_kernel)
    vis, ir = pair(sizes[1])
    with torch.no_grad():
        ref = plain.forward_intermediates(vis, indices=[0, 1], intermediates_only=True)
        taps = model.forward_intermediates(vis, ir)
    assert torch.equal(taps[0], ref[0]) and torch.equal(taps[-1], ref[1])
    assert model.build_config["timm_kwargs"]["patch_size"] == 16  # saved beside an adapter, rebuilt on load
