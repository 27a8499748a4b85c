"""The backbone contract for every family beyond the paper (SAM 2 Hiera, Swin V2, DINOv3, EVA-02 at patch 16).

Zero-init identity against timm's own ``forward_intermediates`` (bit-exact, square, non-square and padded sizes),
the IR image changes the output at the default init, only IV-tuning parameters move under an optimiser, the adapter
files round-trip, gradient checkpointing gives the same gradients (docs/METHOD.md sections 4, 6 and 13), and the
shipped configs of these backbones build and fit their input multiple.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from ivtune import build_backbone, count_parameters, load_adapter, save_adapter
from ivtune.backbones.families import recipe_for
from ivtune.backbones.hiera import HIERADET
from ivtune.backbones.swinv2 import SWINV2
from ivtune.builder import family_for_model_name
from ivtune.config import save_config
from ivtune.runner import load_config

from ..helpers import assert_only_iv_parameters_train, pair
from .beyond_paper import TINY_BEYOND, perturb_norms

KEYS = list(TINY_BEYOND)


def _plain_and_iv(key: str, directory: Path):
    """timm's model with random norms (Swin V2's are zero at init), and the zero-init backbone on its weights file."""
    name, kwargs, _ = TINY_BEYOND[key]
    plain = timm.create_model(name, num_classes=0, **{**family_for_model_name(name).default_kwargs, **kwargs})
    path = directory / f"{key}.safetensors"
    save_file({k: v.contiguous() for k, v in perturb_norms(plain).state_dict().items()}, str(path))
    iv = build_backbone(name, weights=path, adapter_init="zeros", **kwargs)
    return plain.eval(), iv.eval()


def _timm_taps(plain, vis: torch.Tensor, out_indices: list[int]) -> list[torch.Tensor]:
    uniq = sorted(set(out_indices))  # depth-2 columnar models tap blocks [0, 0, 1, 1]; timm de-duplicates
    by_index = dict(zip(uniq, plain.forward_intermediates(vis, indices=uniq, intermediates_only=True), strict=True))
    return [by_index[i] for i in out_indices]


@pytest.mark.parametrize("key", KEYS)
def test_zero_init_equals_timm_bit_exact(key, tmp_path):
    plain, iv = _plain_and_iv(key, tmp_path)
    for hw in TINY_BEYOND[key][2]:
        vis, ir = pair(hw)
        with torch.no_grad():
            ref = _timm_taps(plain, vis, iv.out_indices)
            taps = iv.forward_intermediates(vis, ir)
            outs = iv(vis, ir)
        assert len(taps) == 4
        for a, b in zip(taps, ref, strict=True):
            assert a.shape == b.shape and torch.equal(a, b), hw
        expected = ref if iv.pyramid is None else iv.pyramid(ref, hw)
        assert all(torch.equal(a, b) for a, b in zip(outs, expected, strict=True))


@pytest.mark.parametrize("key", KEYS)
def test_output_geometry_and_finite_in_train_mode(key):
    name, kwargs, sizes = TINY_BEYOND[key]
    iv = build_backbone(name, **kwargs).train()
    hw = sizes[1]
    outs = iv(*pair(hw, ir_channels=3))
    assert iv.strides == [4, 8, 16, 32] and len(iv.out_channels) == 4
    for out, c, s in zip(outs, iv.out_channels, iv.strides, strict=True):
        assert out.shape == (2, c, -(-hw[0] // s), -(-hw[1] // s))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("key", KEYS)
def test_ir_changes_output_at_default_init(key):
    name, kwargs, sizes = TINY_BEYOND[key]
    iv = build_backbone(name, **kwargs).eval()
    vis, ir = pair(sizes[1])
    with torch.no_grad():
        a, b = iv(vis, ir), iv(vis, ir + 1.0)
    assert all(not torch.allclose(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("key, full_name, family, module", [
    ("sam2_hiera", "sam2_hiera_large", HIERADET, "hiera"),
    ("swinv2", "swinv2_large_window12to24_192to384", SWINV2, "swinv2"),
], ids=["sam2_hiera", "swinv2"])
def test_family_module_and_recipe(key, full_name, family, module):
    assert family_for_model_name(full_name) is family and family.hierarchical
    assert type(family).__module__ == f"ivtune.backbones.{module}"
    name, kwargs, _ = TINY_BEYOND[key]
    model = build_backbone(name, **kwargs)
    assert model.family is family
    first = family.stage_blocks(model.model)[0][1][0]  # a wrapper; the timm block inside has the family's recipe
    assert recipe_for(first.block).family == family.name


@pytest.mark.parametrize("key", KEYS)
def test_only_iv_parameters_change(key):
    name, kwargs, sizes = TINY_BEYOND[key]
    assert_only_iv_parameters_train(build_backbone(name, **kwargs).train(), sizes[1])


@pytest.mark.parametrize("key", KEYS)
def test_adapter_save_load_round_trip(key, tmp_path):
    name, kwargs, sizes = TINY_BEYOND[key]
    model = build_backbone(name, **kwargs)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = sum(o.pow(2).mean() for o in model.train()(*pair(sizes[0])))
    loss.backward()
    opt.step()
    save_adapter(model.eval(), tmp_path / "adapter")
    torch.manual_seed(0)  # the random-init frozen backbone is rebuilt from the seed it was built with
    restored = load_adapter(tmp_path / "adapter").eval()
    vis, ir = pair(sizes[1], seed=3)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(vis, ir), restored(vis, ir), strict=True))


@pytest.mark.parametrize("key", KEYS)
def test_gradient_checkpointing_matches(key):
    name, kwargs, sizes = TINY_BEYOND[key]
    model = build_backbone(name, **kwargs).eval()  # eval: adapter dropout off, both passes deterministic
    vis, ir = pair(sizes[1])
    grads = []
    for enable in (False, True):
        model.set_grad_checkpointing(enable)
        model.zero_grad()
        sum(o.sum() for o in model(vis, ir)).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n, g in grads[0].items():
        # a stage's prompts are computed together without checkpointing and per block with it (the backbone's
        # prepare_blocks): the same sums in another order, so compare to float32 rounding of the largest entry
        torch.testing.assert_close(g, grads[1][n], rtol=1e-5, atol=1e-5 * float(g.abs().max()), msg=n)


REPO = Path(__file__).resolve().parents[2]
CONFIGS = [  # (config, trainable IV-tuning parameters of its backbone)
    ("seg/mfnet_eva02_l_p16_segformer.yaml", 8_899_652),
    ("sod/vt5000_eva02_l_p16_cpnet.yaml", 8_899_652),
    ("seg/mfnet_dinov3_l_segformer.yaml", 8_899_652),
    ("seg/mfnet_sam2_hiera_l_segformer.yaml", 9_394_996),
]


@pytest.mark.parametrize("config, trainable", CONFIGS, ids=[c for c, _ in CONFIGS])
def test_configs_build_their_backbone_and_fit_its_input_multiple(config, trainable, tmp_path):
    cfg = load_config(REPO / "configs" / config)
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg
    m = cfg.model
    with torch.device("meta"):
        backbone = build_backbone(m.backbone, method=m.method, out_indices=m.out_indices, **m.timm_kwargs)
    assert count_parameters(backbone)["trainable"] == trainable
    size = cfg.data.crop_size if cfg.task == "seg" else cfg.data.size
    assert all(s % backbone.input_multiple == 0 for s in size), (size, backbone.input_multiple)
