"""Hub-ready folders: adapter files + task head + model card; loaded from a folder or a Hub id (offline cache)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import ivtune
from ivtune.errors import ConfigError, WeightsUnavailableError
from ivtune.runner.hub import HubError, from_pretrained, push_to_hub, save_pretrained
from ivtune.runner.predictor import Predictor
from ivtune.runner.run import evaluate, train
from tests.helpers import TINY

hub = pytest.importorskip("huggingface_hub")

REPO = Path(__file__).resolve().parents[2]
SEG = REPO / "configs" / "seg" / "synthetic_tiny.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("hub")
    run_dir = train(SEG, [f"train.output_dir={tmp}", "train.run_name=seg_tiny", "train.max_steps=2",
                          "train.val_every=2", "train.checkpoint_every=2", "data.num_samples=4", "data.batch_size=2",
                          "optim.warmup_iters=0"])
    evaluate(run_dir)  # eval/test/metrics.json: the model card's results
    return run_dir


def _front_matter(card: Path) -> dict:
    text = card.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), rng.integers(0, 256, (70, 90), dtype=np.uint8)


def test_run_folder_is_hub_ready_and_loads_back(run, tmp_path):
    folder = ivtune.save_pretrained(run, tmp_path / "seg_tiny")
    names = {p.name for p in folder.iterdir()}
    assert names == {"adapter_config.json", "adapter_model.safetensors", "head_model.safetensors", "config.yaml",
                     "dataset_info.json", "README.md"}
    meta = _front_matter(folder / "README.md")
    assert meta["library_name"] == "ivtune" and meta["base_model"].startswith("timm/vit_small_patch16_224")
    assert {"ivtune", "iv-tuning", "infrared", "semantic-segmentation"} <= set(meta["tags"])
    assert meta["datasets"] == ["synthetic"] and set(meta["metrics"]) == {"miou", "pixel_acc"}
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["split"] == "test" and result["metrics"][0]["type"] in ("miou", "pixel_acc")
    body = (folder / "README.md").read_text()
    assert "arXiv:2412.16654" in body and "@article{zhang2024ivtuning" in body
    # the same predictions as the run itself
    vis, ir = _pair()
    ref = Predictor.from_run(run).predict(vis, ir, probabilities=True)
    got = Predictor.from_pretrained(folder).predict(vis, ir, probabilities=True)
    np.testing.assert_array_equal(got.mask, ref.mask)
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-6)
    module = ivtune.from_pretrained(folder)
    assert module.cfg.task == "seg" and not module.training


def test_backbone_folder_round_trip(tmp_path):
    name, kwargs, hw, _ = TINY["vit"]
    torch.manual_seed(1)  # a random-init backbone: its frozen weights come from the seed, the adapters from the file
    backbone = ivtune.build_backbone(name, **kwargs)
    with torch.no_grad():
        for p in backbone.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))  # adapters away from their zero init
    folder = save_pretrained(backbone, tmp_path / "adapter")
    meta = _front_matter(folder / "README.md")
    assert meta["library_name"] == "ivtune" and "model-index" not in meta
    torch.manual_seed(1)
    loaded = from_pretrained(folder)
    assert isinstance(loaded, ivtune.IVBackbone)
    torch.manual_seed(0)
    vis, ir = torch.randn(1, 3, *hw), torch.randn(1, 1, *hw)
    backbone.eval(), loaded.eval()
    with torch.no_grad():
        for a, b in zip(backbone(vis, ir), loaded(vis, ir), strict=True):
            assert torch.equal(a, b)
    with pytest.raises(ConfigError, match="a backbone adapter without a task head"):
        Predictor.from_pretrained(folder)


def _fill_cache(cache: Path, repo_id: str, folder: Path, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """huggingface_hub's cache layout, as a download leaves it: refs/main -> snapshots/<commit>/<files>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(folder, repo / "snapshots" / commit)


def test_hub_id_from_a_prefilled_cache_offline(run, tmp_path, monkeypatch):
    folder = save_pretrained(run, tmp_path / "seg_tiny")
    cache = tmp_path / "cache"
    _fill_cache(cache, "ivtune-test/seg-tiny", folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)  # read once at import by huggingface_hub
    vis, ir = _pair(1)
    got = Predictor.from_pretrained("ivtune-test/seg-tiny", cache_dir=cache).predict(vis, ir)
    np.testing.assert_array_equal(got.mask, Predictor.from_run(run).predict(vis, ir).mask)
    with pytest.raises(WeightsUnavailableError, match=r"offline .*pass the local folder"):
        from_pretrained("ivtune-test/not-cached", cache_dir=cache)
    with pytest.raises(HubError, match="uploading .* failed"):
        push_to_hub(folder, "ivtune-test/seg-tiny")


def test_not_a_folder_nor_an_id(tmp_path):
    with pytest.raises(ConfigError, match="neither a folder nor a Hub id"):
        from_pretrained(tmp_path / "missing" / "deeper" / "x")
