"""Pretrained weights: strict key checks, the offline DINOv2-S file, and a clear error when the hub is unreachable."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from ivtune import build_backbone, count_parameters, load_adapter, save_adapter
from ivtune.errors import CheckpointMismatchError, WeightsUnavailableError

from ..helpers import DINOV2_FILE, TINY, pair, requires_shared

dinov2 = requires_shared(DINOV2_FILE)


@dinov2
def test_dinov2_file_loads_strictly_and_runs():
    model = build_backbone("vit_small_patch14_dinov2", weights=DINOV2_FILE).eval()
    ref = load_file(str(DINOV2_FILE))
    own = {k.replace(".block.", "."): v for k, v in model.model.state_dict().items() if ".iv_" not in k}
    assert set(ref) == set(own)  # every key of the file, and nothing else, is in the frozen backbone
    assert all(torch.equal(ref[k], own[k]) for k in ref)
    assert model.build_config["weights_sha256"].startswith("dc75e3dd")
    assert count_parameters(model)["trainable"] == 1_882_756
    vis, ir = pair((224, 280), batch=1)  # non-square, a multiple of 14
    with torch.no_grad():
        outs = model(vis, ir)
    assert [tuple(o.shape[-2:]) for o in outs] == [(56, 70), (28, 35), (14, 18), (7, 9)]
    assert all(torch.isfinite(o).all() for o in outs)


@dinov2
def test_truncated_file_is_an_error(tmp_path):
    sd = load_file(str(DINOV2_FILE))
    del sd["blocks.3.mlp.fc1.weight"]
    sd["blocks.99.extra"] = torch.zeros(1)
    bad = tmp_path / "truncated.safetensors"
    save_file(sd, str(bad))
    match = r"missing \(1\): blocks\.3\.mlp\.fc1\.weight; unexpected \(1\): blocks\.99"
    with pytest.raises(CheckpointMismatchError, match=match):
        build_backbone("vit_small_patch14_dinov2", weights=bad)


@dinov2
def test_adapter_checks_backbone_file(tmp_path):
    model = build_backbone("vit_small_patch14_dinov2", weights=DINOV2_FILE)
    save_adapter(model, tmp_path / "a")
    with pytest.raises(CheckpointMismatchError, match="pass weights=PATH"):
        load_adapter(tmp_path / "a")
    other = tmp_path / "other.safetensors"
    save_file({k: v.clone() for k, v in load_file(str(DINOV2_FILE)).items()} | {}, str(other),
              metadata={"x": "different bytes"})
    with pytest.raises(CheckpointMismatchError, match="not the backbone file"):
        load_adapter(tmp_path / "a", weights=other)
    restored = load_adapter(tmp_path / "a", weights=DINOV2_FILE).eval()
    vis, ir = pair((56, 70), batch=1)
    with torch.no_grad():
        for a, b in zip(model.eval()(vis, ir), restored(vis, ir), strict=True):
            assert torch.equal(a, b)


def test_wrong_shape_file(tmp_path):
    name, kwargs, _, _ = TINY["vit"]
    torch.manual_seed(0)
    other = build_backbone(name, **{**kwargs, "embed_dim": 32})
    path = tmp_path / "w.safetensors"
    save_file({k.replace(".block.", "."): v.contiguous() for k, v in other.model.state_dict().items()
               if ".iv_" not in k}, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"wrong shape \(\d+\): .*file \(32"):
        build_backbone(name, weights=path, **kwargs)


def test_missing_file():
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        build_backbone("vit_small_patch16_224", weights="no/such/file.safetensors", depth=1, embed_dim=32,
                       num_heads=1)


def test_hub_unreachable_suggests_local_file(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # what an offline machine sees, without waiting
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    name, kwargs, _, _ = TINY["vit"]
    with pytest.raises(WeightsUnavailableError, match=r"could not download .*weights=FILE"):
        build_backbone(name, pretrained=True, **kwargs)
