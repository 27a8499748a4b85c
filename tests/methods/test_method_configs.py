"""Method configs: validated on construction, built from dicts with helpful errors, honoured by build_backbone,
recorded in build_config and round-tripped through adapter folders."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch

from ivtune import (
    METHODS,
    AdaptFormerConfig,
    EmptyConfig,
    FrozenConfig,
    IVTuningConfig,
    LoRAConfig,
    VPTConfig,
    build_backbone,
    count_parameters,
    load_adapter,
    save_adapter,
)
from ivtune.errors import ConfigError
from ivtune.inject.adaptformer import ParallelAdapter
from ivtune.inject.lora import LoRAUpdate
from ivtune.inject.vpt import PromptTokens
from ivtune.methods import method_config
from ivtune.modules import EMPG, HybridAdapter, InternalPromptAdapter
from tests.helpers import TINY, pair

CONFIG_OF = {
    "iv-tuning": IVTuningConfig, "full": IVTuningConfig, "frozen": FrozenConfig, "vpt": VPTConfig,
    "adaptformer": AdaptFormerConfig, "lora": LoRAConfig, "vis-only-full": EmptyConfig, "dual-branch": EmptyConfig,
}


def tiny(method: str = "iv-tuning", key: str = "vit", **kw):
    name, kwargs, _, _ = TINY[key]
    return build_backbone(name, method=method, **kwargs, **kw)


def test_every_method_names_its_config_class():
    assert {m: METHODS[m].config_cls for m in METHODS} == CONFIG_OF


def test_defaults_are_the_published_hyperparameters():
    assert dataclasses.asdict(IVTuningConfig()) == {
        "empg_hidden": 8, "init": "default", "adapter_hidden": 64, "prompt_hidden": 8, "dropout": 0.1}
    assert (LoRAConfig().rank, LoRAConfig().alpha) == (8, 8.0)
    assert VPTConfig().num_tokens == 10
    assert (AdaptFormerConfig().bottleneck, AdaptFormerConfig().scale) == (64, 0.1)
    assert FrozenConfig().to_dict() == {"empg_hidden": 8, "init": "default"}
    assert EmptyConfig().to_dict() == {}


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoRAConfig().rank = 4


@pytest.mark.parametrize(
    "cls, field, value, valid",
    [
        (LoRAConfig, "rank", 0, "an integer >= 1"),
        (LoRAConfig, "rank", 4.0, "an integer >= 1"),
        (LoRAConfig, "rank", True, "an integer >= 1"),
        (LoRAConfig, "alpha", 0.0, r"a number in \(0, inf\)"),
        (IVTuningConfig, "dropout", 1.0, r"a number in \[0, 1\)"),
        (IVTuningConfig, "dropout", "0.1", r"a number in \[0, 1\)"),
        (IVTuningConfig, "adapter_hidden", -64, "an integer >= 1"),
        (IVTuningConfig, "init", "ones", "one of 'default', 'zeros'"),
        (FrozenConfig, "empg_hidden", 0, "an integer >= 1"),
        (VPTConfig, "num_tokens", 0, "an integer >= 1"),
        (AdaptFormerConfig, "scale", -0.1, r"a number in \(0, inf\)"),
    ],
)
def test_bad_values_name_field_value_and_range(cls, field, value, valid):
    match = rf"{cls.__name__}\.{field} = {re.escape(repr(value))} is invalid: it must be {valid}\."
    with pytest.raises(ConfigError, match=match):
        cls(**{field: value})


def test_numbers_are_stored_as_floats():
    assert LoRAConfig(alpha=16).alpha == 16.0 and isinstance(LoRAConfig(alpha=16).alpha, float)


def test_method_config_from_dict_and_objects():
    assert method_config("lora", {"rank": 4}) == LoRAConfig(rank=4)
    assert method_config("lora", None) == LoRAConfig()
    cfg = VPTConfig(num_tokens=5)
    assert method_config("vpt", cfg) is cfg
    assert method_config("full", {"adapter_hidden": 32}) == IVTuningConfig(adapter_hidden=32)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError) as e:
        method_config("lora", {"rnk": 4})
    assert str(e.value) == ("unknown key 'rnk' for method 'lora'; did you mean 'rank'? "
                            "Valid: alpha, empg_hidden, init, rank.")
    with pytest.raises(ConfigError, match=r"unknown key 'xyz' for method 'dual-branch'\. Valid: none"):
        method_config("dual-branch", {"xyz": 1})


def test_config_of_another_method_or_type():
    with pytest.raises(ConfigError, match=r"method 'iv-tuning' takes IVTuningConfig, got LoRAConfig"):
        method_config("iv-tuning", LoRAConfig())
    with pytest.raises(ConfigError, match=r"must be a LoRAConfig or a dict, got list"):
        method_config("lora", [("rank", 4)])
    with pytest.raises(ConfigError, match="unknown method 'lora2'"):
        method_config("lora2", {})


# ---------------------------------------------------------------------------------------- build_backbone
def test_non_default_hyperparameters_reach_the_modules():
    lora = tiny("lora", method_config={"rank": 4, "alpha": 8})
    updates = [m for m in lora.modules() if isinstance(m, LoRAUpdate)]
    assert updates and all(u.lora_A.shape[0] == 4 and u.scale == 2.0 for u in updates)
    iv = tiny(method_config=IVTuningConfig(adapter_hidden=32, prompt_hidden=4, empg_hidden=16, dropout=0.0))
    has = [m for m in iv.modules() if isinstance(m, HybridAdapter)]
    assert has and all(h.down.out_features == 32 and h.drop.p == 0.0 for h in has)
    assert all(m.down.out_features == 4 for m in iv.modules() if isinstance(m, InternalPromptAdapter))
    assert iv.prompt_stem.empg.vis_proj.out_channels == 16
    vpt = tiny("vpt", method_config={"num_tokens": 3})
    assert all(p.tokens.shape[1] == 3 for p in vpt.modules() if isinstance(p, PromptTokens))
    af = tiny("adaptformer", method_config={"bottleneck": 16, "scale": 0.5})
    assert all(a.down.out_features == 16 and a.scale == 0.5 for a in af.modules() if isinstance(a, ParallelAdapter))


def test_empg_width_64_gives_the_vitdet_b_count():
    # docs/METHOD.md section 7: ViT-B/16 with EMPG r = 64 -> 3,832,800 trainable
    with torch.device("meta"):
        model = build_backbone("vit_base_patch16_224", method_config={"empg_hidden": 64})
    assert count_parameters(model)["trainable"] == 3_832_800
    assert sum(p.numel() for p in model.prompt_stem.empg.parameters()) == sum(
        p.numel() for p in EMPG(768, hidden=64).parameters())


def test_build_config_records_the_method_config():
    model = tiny("lora", method_config={"rank": 4})
    assert model.build_config["method_config"] == {"rank": 4, "alpha": 8.0, "empg_hidden": 8, "init": "default"}
    assert "adapter_dropout" not in model.build_config
    assert tiny("dual-branch").build_config["method_config"] == {}


def test_old_keywords_map_onto_the_config():
    model = tiny(adapter_dropout=0.0, adapter_init="zeros")
    assert model.build_config["method_config"]["dropout"] == 0.0
    assert model.build_config["method_config"]["init"] == "zeros"
    assert all(m.drop.p == 0.0 for m in model.modules() if isinstance(m, HybridAdapter))
    # agreeing with an explicit config is fine; a field the dict does not set is filled
    tiny(method_config={"dropout": 0.0}, adapter_dropout=0.0)
    assert tiny(method_config={"adapter_hidden": 32}, adapter_dropout=0.2).build_config["method_config"][
        "dropout"] == 0.2
    # a method without adapter dropout ignores the keyword, as run configs pass it to every method
    assert "dropout" not in tiny("lora", adapter_dropout=0.0).build_config["method_config"]
    assert tiny("lora", adapter_init="zeros").build_config["method_config"]["init"] == "zeros"


def test_old_keywords_contradicting_the_config_are_errors():
    with pytest.raises(ConfigError, match=r"adapter_dropout=0\.2 contradicts method_config dropout=0\.0"):
        tiny(method_config={"dropout": 0.0}, adapter_dropout=0.2)
    with pytest.raises(ConfigError, match=r"adapter_init='zeros' contradicts method_config init='default'"):
        tiny("lora", method_config=LoRAConfig(rank=4), adapter_init="zeros")
    with pytest.raises(ConfigError, match=r"adapter_dropout must be in \[0, 1\), got 1\.5"):
        tiny("lora", adapter_dropout=1.5)


def test_bad_config_fails_before_building(monkeypatch):
    import timm

    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("built a model"))
    with pytest.raises(ConfigError, match="did you mean 'rank'"):
        build_backbone("vit_small_patch16_224", method="lora", method_config={"ranks": 4})


# ---------------------------------------------------------------------------------------- adapter folders
@pytest.mark.parametrize(
    "method, values",
    [("lora", {"rank": 4, "alpha": 2.0}), ("iv-tuning", {"adapter_hidden": 32, "empg_hidden": 16, "dropout": 0.0}),
     ("vpt", {"num_tokens": 3}), ("adaptformer", {"bottleneck": 8})],
)
def test_non_default_config_round_trips(tmp_path, method, values):
    name, kwargs, _, hw = TINY["vit"]
    torch.manual_seed(0)
    model = build_backbone(name, method=method, method_config=values, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)  # the zero-initialised halves must round-trip too
    save_adapter(model, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert saved["method_config"] == model.build_config["method_config"]
    assert list(saved["method_config"]) == sorted(saved["method_config"])
    torch.manual_seed(0)
    loaded = load_adapter(tmp_path / "a").eval()
    assert loaded.build_config["method_config"] == model.build_config["method_config"]
    vis, ir = pair(hw)
    with torch.no_grad():
        for a, b in zip(model(vis, ir), loaded(vis, ir), strict=True):
            assert torch.equal(a, b)
