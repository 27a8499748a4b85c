"""Adapter-only checkpoints: round trip, size, and mismatches reported by name."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ivtune import build_backbone, count_parameters, load_adapter, save_adapter
from ivtune.errors import CheckpointMismatchError

from ..conftest import TINY, pair


def _train_a_bit(model, hw):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for s in range(2):
        loss = sum(o.pow(2).mean() for o in model(*pair(hw, seed=s)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("key", ["vit", "swin"])
def test_round_trip_identical_outputs(tmp_path, key):
    name, kwargs, _, hw = TINY[key]
    model = _train_a_bit(build_backbone(name, **kwargs), hw)
    save_adapter(model, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["name"] == name and config["method"] == "iv-tuning" and config["timm_kwargs"]
    assert list(config) == sorted(config)
    assert {"ivtune_version", "timm_version", "weights_sha256"} <= set(config)

    torch.manual_seed(0)  # random-init frozen backbone: rebuild it with the same seed as the original
    restored = load_adapter(tmp_path / "adapter").eval()
    vis, ir = pair(hw, seed=7)
    with torch.no_grad():
        for a, b in zip(model(vis, ir), restored(vis, ir), strict=True):
            assert torch.equal(a, b)


def test_adapter_file_is_small(tmp_path):
    with torch.device("meta"):
        counts = count_parameters(build_backbone("vit_base_patch16_224"))
    name, kwargs, _, _ = TINY["vit"]
    model = build_backbone(name, **kwargs)
    save_adapter(model, tmp_path)
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    n_saved = sum(t.numel() for t in tensors.values())
    n_trainable = count_parameters(model)["trainable"]
    bn_stats = sum(t.numel() for k, t in tensors.items() if "running_" in k or "num_batches" in k)
    assert n_saved == n_trainable + bn_stats  # trainable tensors + adapter BN statistics, nothing frozen
    assert not any(".block." in k for k in tensors)  # no frozen timm weights
    assert counts["ratio"] < 0.05  # full-size: the adapter is a few % of the backbone


def test_mismatch_lists_keys(tmp_path):
    name, kwargs, _, _ = TINY["vit"]
    save_adapter(build_backbone(name, **kwargs), tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    tensors = load_file(str(path))
    dropped = sorted(tensors)[0]
    del tensors[dropped]
    tensors["model.extra.weight"] = torch.zeros(3)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointMismatchError) as e:
        load_adapter(tmp_path)
    assert dropped in str(e.value) and "model.extra.weight" in str(e.value)


def test_shape_mismatch_named(tmp_path):
    name, kwargs, _, _ = TINY["vit"]
    save_adapter(build_backbone(name, **kwargs), tmp_path)
    cfg_path = tmp_path / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["timm_kwargs"]["embed_dim"] = 32  # a different backbone width: every adapter tensor mis-shaped
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatchError, match=r"wrong shape \(\d+\): .*file \(64"):
        load_adapter(tmp_path)


def test_not_an_adapter_dir(tmp_path):
    with pytest.raises(CheckpointMismatchError, match="adapter_config.json not found"):
        load_adapter(tmp_path)
