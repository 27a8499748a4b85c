"""Adapter-only checkpoints: round trip, size, and mismatches reported by name."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ivtune import build_backbone, count_parameters, load_adapter, save_adapter
from ivtune.checkpoint import trainable_state_dict
from ivtune.errors import CheckpointMismatchError

from ..helpers import TINY, pair


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


# an adapter_config.json as ivtune 0.1 wrote it: no method_config, adapter_dropout at the top level
LEGACY_LAYOUT = {
    "adapter_dropout", "format", "ivtune_version", "method", "name", "num_parameters", "num_tensors",
    "out_indices", "pretrained", "timm_kwargs", "timm_version", "torch_version", "weights_file", "weights_sha256",
}


def _write_legacy_folder(directory, model, adapter_dropout: float) -> None:
    tensors = {k: v.contiguous() for k, v in trainable_state_dict(model).items()}
    directory.mkdir()
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "ivtune-adapter/1"})
    name, kwargs, _, _ = TINY["vit"]
    config = {
        "adapter_dropout": adapter_dropout, "format": "ivtune-adapter/1", "ivtune_version": "0.1.0",
        "method": model.build_config["method"], "name": name,
        "num_parameters": sum(t.numel() for t in tensors.values()), "num_tensors": len(tensors),
        "out_indices": [0, 0, 1, 1], "pretrained": False, "timm_kwargs": kwargs, "timm_version": "1.0.31",
        "torch_version": "2.14.1", "weights_file": None, "weights_sha256": None,
    }
    assert set(config) == LEGACY_LAYOUT
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("method, dropout", [("iv-tuning", 0.0), ("iv-tuning", 0.1), ("lora", 0.1)])
def test_folder_of_the_previous_release_loads(tmp_path, method, dropout):
    name, kwargs, _, hw = TINY["vit"]
    torch.manual_seed(0)
    model = _train_a_bit(build_backbone(name, method=method, **kwargs), hw)
    _write_legacy_folder(tmp_path / "old", model, dropout)
    torch.manual_seed(0)
    restored = load_adapter(tmp_path / "old").eval()
    if method == "iv-tuning":  # the top-level adapter_dropout becomes the config's dropout
        assert restored.build_config["method_config"]["dropout"] == dropout
    assert {k: v for k, v in restored.build_config["method_config"].items() if k != "dropout"} == {
        k: v for k, v in model.build_config["method_config"].items() if k != "dropout"}
    vis, ir = pair(hw, seed=3)
    with torch.no_grad():
        for a, b in zip(model(vis, ir), restored(vis, ir), strict=True):
            assert torch.equal(a, b)


def test_new_folder_records_the_method_config(tmp_path):
    name, kwargs, _, _ = TINY["vit"]
    save_adapter(build_backbone(name, **kwargs), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    # adapter_sha256: the digest load_adapter checks the weights file against
    assert set(config) == LEGACY_LAYOUT - {"adapter_dropout"} | {"method_config", "adapter_sha256"}
    assert config["method_config"] == {"adapter_hidden": 64, "dropout": 0.1, "empg_hidden": 8, "init": "default",
                                       "prompt_hidden": 8}
