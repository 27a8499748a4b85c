"""``ivtune analyze``: the spectrum maths on known matrices, reading block tokens, and the command end to end on
each task's tiny config (trained a few steps here), overlays and their errors, and the maps' sizes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from ivtune import build_backbone
from ivtune.cli import main
from ivtune.errors import ConfigError
from ivtune.runner.analyze import AnalysisOptions, analyze, reference_backbone
from ivtune.runner.block_tokens import BlockTokenReader, block_layout, tokens_to_map
from ivtune.runner.run import load_run_model, resolve, train
from ivtune.runner.spectrum import (
    components_for,
    effective_rank,
    explained_variance,
    pca_basis,
    sample_token_indices,
    singular_values,
)
from tests.helpers import TINY

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"seg": REPO / "configs" / "seg" / "synthetic_tiny.yaml",
           "sod": REPO / "configs" / "sod" / "synthetic_tiny.yaml",
           "det": REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml"}


# ---------------------------------------------------------------------------------------------------- maths
def test_effective_rank_of_identity_is_full():
    for n in (1, 7, 64):
        assert effective_rank(singular_values(torch.eye(n), center=False)) == pytest.approx(n, rel=1e-9)


def test_effective_rank_of_rank_k_products():
    g = torch.Generator().manual_seed(0)
    # orthonormal factors: k equal singular values, exactly rank k
    q1, _ = torch.linalg.qr(torch.randn(200, 5, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(60, 5, generator=g, dtype=torch.float64))
    assert effective_rank(singular_values(q1 @ q2.T, center=False)) == pytest.approx(5, rel=1e-6)
    # Gaussian factors: k non-zero but unequal singular values, close to k and never above it
    for k in (3, 10):
        a = torch.randn(2000, k, generator=g, dtype=torch.float64)
        b = torch.randn(k, 300, generator=g, dtype=torch.float64)
        erank = effective_rank(singular_values(a @ b, center=False))
        assert k * 0.9 < erank <= k + 1e-6


def test_effective_rank_of_a_repeated_vector_is_one():
    v = torch.randn(48)
    x = v.expand(100, -1).clone()
    assert effective_rank(singular_values(x, center=False)) == pytest.approx(1.0, abs=1e-6)
    # centred, the matrix is zero: no rank at all
    assert effective_rank(singular_values(x, center=True)) == 0.0
    # a repeated vector plus an offset per row is rank one after centring
    y = x + torch.linspace(0, 1, 100)[:, None] * torch.randn(48)
    assert effective_rank(singular_values(y)) == pytest.approx(1.0, abs=1e-3)


def test_components_for_variance_shares():
    s = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64).sqrt()  # variances 50 / 30 / 15 / 5 %
    assert explained_variance(s).tolist() == pytest.approx([0.5, 0.8, 0.95, 1.0])
    assert components_for(s, 0.5) == 1
    assert components_for(s, 0.9) == 3
    assert components_for(s, 0.99) == 4
    assert components_for(torch.zeros(3), 0.9) == 0
    with pytest.raises(Exception, match="share"):
        components_for(s, 1.5)


def test_token_sampling_is_deterministic_by_seed():
    a = sample_token_indices(1000, 64, seed=3, image_index=5)
    assert torch.equal(a, sample_token_indices(1000, 64, seed=3, image_index=5))
    assert len(a) == 64 and len(set(a.tolist())) == 64 and torch.equal(a, a.sort().values)
    assert int(a.min()) >= 0 and int(a.max()) < 1000
    assert not torch.equal(a, sample_token_indices(1000, 64, seed=4, image_index=5))
    assert not torch.equal(a, sample_token_indices(1000, 64, seed=3, image_index=6))
    # the global RNG plays no part
    torch.manual_seed(123)
    b = sample_token_indices(1000, 64, seed=3, image_index=5)
    assert torch.equal(a, b)
    assert torch.equal(sample_token_indices(10, 64, 0, 0), torch.arange(10))  # fewer tokens: all of them
    assert torch.equal(sample_token_indices(10, 0, 0, 0), torch.arange(10))  # 0: all of them


def test_pca_basis_is_orthonormal_and_sign_fixed():
    x = torch.randn(300, 16, dtype=torch.float64) * torch.linspace(3, 0.1, 16)
    mean, comps = pca_basis(x, 3)
    assert torch.allclose(comps @ comps.T, torch.eye(3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(mean, x.mean(0))
    _, comps_neg = pca_basis(-x, 3)
    assert torch.allclose(comps, comps_neg, atol=1e-9)  # the same directions give the same colours


# ---------------------------------------------------------------------------------------------------- block tokens
@pytest.mark.parametrize("family", ["vit", "swin", "dinov2_reg"])
@pytest.mark.parametrize("method", ["iv-tuning", "vis-only-full", "dual-branch"])
def test_tapped_block_tokens_equal_the_backbone_taps(family, method):
    name, kwargs, _, hw = TINY[family]
    backbone = build_backbone(name, method=method, **kwargs).eval()
    vis, ir = torch.randn(2, 3, *hw), torch.randn(2, 1, *hw)
    layout = block_layout(backbone)
    tapped = [b.label for b in layout if b.tapped]
    with BlockTokenReader(backbone) as reader:
        out = reader.read(vis, ir)
    with torch.no_grad():
        taps = backbone.forward_intermediates(vis, ir)
    labels = tapped if backbone.family.hierarchical else [f"blocks.{i}" for i in backbone.out_indices]
    assert len(labels) == len(taps)
    for label, tap in zip(labels, taps, strict=True):
        torch.testing.assert_close(tokens_to_map(*out[label]), tap)  # dual-branch: the sum of both branches
    assert set(out) == {b.label for b in layout}  # every block ran (the last one is tapped)
    assert not any(blk._forward_hooks for _, c in backbone.family.stage_blocks(backbone.model) for blk in c)


# ---------------------------------------------------------------------------------------------------- end to end
def _train(task: str, tmp: Path, name: str, *extra: str) -> Path:
    return train(CONFIGS[task], [f"train.output_dir={tmp}", f"train.run_name={name}", "train.max_steps=3",
                                 "train.val_every=3", "train.checkpoint_every=3", "optim.warmup_iters=0",
                                 "data.num_samples=4", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("analyze")
    out = {task: _train(task, tmp, task) for task in CONFIGS}
    out["seg_full"] = _train("seg", tmp, "seg_full", "model.method=full")
    return out


OPTIONS = AnalysisOptions(max_images=3, tokens_per_image=32)
MAPS = AnalysisOptions(max_images=3, tokens_per_image=32, maps=True, maps_images=2)
needs_grad_cam = pytest.mark.skipif(importlib.util.find_spec("pytorch_grad_cam") is None,
                                    reason="pytorch-grad-cam (the analysis extra) is not installed")


@pytest.mark.parametrize("task", ["seg", "sod", "det"])
def test_analyze_each_task_end_to_end(runs, task):
    result = analyze([runs[task]], OPTIONS)
    out = runs[task] / "analysis" / "test"
    for name in ("analysis.json", "analysis.md", "effective_rank.png", "explained_variance.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["settings"]["tokens_per_image"] == 32 and saved["settings"]["sampling"]
    (entry,) = saved["runs"]
    assert entry == json.loads(json.dumps(result["runs"][0]))
    assert entry["task"] == task and entry["images"] == 3
    # the tiny 2-block ViT taps [0, 0, 1, 1]: blocks 0 and 1, 64 wide, 32 sampled tokens from each of 3 images
    for blocks in (entry["blocks"], entry["reference"]["blocks"]):
        assert [b["block"] for b in blocks] == ["blocks.0", "blocks.1"]
        for b in blocks:
            assert b["dim"] == 64 and b["tokens"] == 3 * 32 and len(b["singular_values"]) == 64
            assert 1.0 < b["effective_rank"] <= b["max_rank"]
            assert 1 <= b["components_90"] <= b["components_99"] <= b["max_rank"]
            assert b["singular_values"] == sorted(b["singular_values"], reverse=True)
    # trained blocks (IV-tuning adapters) give other features than the frozen reference
    assert entry["blocks"][-1]["singular_values"] != entry["reference"]["blocks"][-1]["singular_values"]
    md = (out / "analysis.md").read_text()
    assert "Effective rank per block" in md and "blocks.1" in md and "reference" in md


@needs_grad_cam
@pytest.mark.parametrize("task", ["seg", "sod", "det"])
def test_maps_are_written_at_the_input_size(runs, task):
    analyze([runs[task]], MAPS)
    maps_dir = runs[task] / "analysis" / "test" / "maps"
    listed = json.loads((maps_dir / "maps.json").read_text())
    assert len(listed) == 2
    cfg, _ = resolve(runs[task])
    from ivtune.tasks import get_task

    ds = get_task(task).build_dataset(cfg, "test", train=False)
    for item in listed:
        h, w = ds.load_raw(item["index"])["vis"].shape[:2]  # the image as read (SOD's model input is resized)
        assert item["size"] == [h, w]
        for which in ("pca", "pca_reference", "cam"):
            with Image.open(maps_dir / item["files"][which]) as im:
                assert (im.height, im.width) == (h, w), which
                assert im.mode == "RGB"
        with Image.open(maps_dir / item["files"]["panel"]) as im:
            assert (im.height, im.width) == (h, 5 * w)
        pca = np.asarray(Image.open(maps_dir / item["files"]["pca"]))
        assert pca.std() > 0  # the tokens differ over the image: not one flat colour
    if task == "det":
        assert all("detection" in m["cam"] for m in listed)
    elif task == "sod":
        assert all("saliency" in m["cam"] for m in listed)


@needs_grad_cam
def test_seg_cam_class_by_name_and_wrong_class(runs):
    result = analyze([runs["seg"]], AnalysisOptions(max_images=2, tokens_per_image=16, maps=True, maps_images=1,
                                                    cam_class="car"))
    assert "class 4 'car'" in result["runs"][0]["maps"][0]["cam"]
    with pytest.raises(ConfigError, match="not a class of this run.*4 car"):
        analyze([runs["seg"]], AnalysisOptions(max_images=2, maps=True, cam_class="tree"))
    with pytest.raises(ConfigError, match="--cam-class applies to segmentation"):
        analyze([runs["sod"]], AnalysisOptions(max_images=2, maps=True, cam_class="car"))


@needs_grad_cam
def test_grad_cam_of_seg_has_signal(runs):
    from ivtune.runner.maps import grad_cam

    cfg, run_dir = resolve(runs["seg"])
    module = load_run_model(cfg, run_dir)
    backbone = module.model.backbone
    vis, ir = torch.randn(1, 3, 64, 80), torch.randn(1, 3, 64, 80)
    cam, what = grad_cam(module.model, "seg", vis, ir, (64, 80), BlockTokenReader(backbone).modules_at("blocks.1"),
                         (4, 5), ["background", "road", "building", "person", "car", "bike"], None)
    assert cam.shape == (64, 80) and np.isfinite(cam).all()
    assert 0.0 <= cam.min() and cam.max() <= 1.0 and cam.max() > 0.5  # min-max scaled by grad-cam
    assert "class" in what
    assert not any(p.grad is not None for p in module.parameters())  # gradients reached the activations only
    assert any(p.requires_grad for p in module.parameters())  # and the flags were restored


def test_maps_without_grad_cam_say_how_to_install(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"ivtune\[analysis\]"):
        analyze([runs["seg"]], MAPS)


def test_reference_has_the_runs_frozen_weights(runs):
    cfg, run_dir = resolve(runs["seg"])
    module = load_run_model(cfg, run_dir)
    ref = reference_backbone(cfg)
    assert not ref.ir_input and not ref.has_adapters and not any(p.requires_grad for p in ref.parameters())
    run_timm = {k.replace(".block.", "."): v for k, v in module.model.backbone.model.state_dict().items()}
    ref_timm = ref.model.state_dict()
    assert set(ref_timm) <= set(run_timm)
    for k, v in ref_timm.items():  # random init from train.seed: the same draws as the run's frozen weights
        assert torch.equal(v, run_timm[k]), k


def test_overlay_of_two_runs(runs, tmp_path):
    result = analyze([runs["seg"], runs["seg_full"]], AnalysisOptions(max_images=2, tokens_per_image=16),
                     out=tmp_path / "overlay")
    saved = json.loads((tmp_path / "overlay" / "analysis.json").read_text())
    assert [e["method"] for e in saved["runs"]] == ["iv-tuning", "full"]
    assert saved["runs"][0]["reference"] == saved["runs"][1]["reference"]  # one reference, computed once
    md = (tmp_path / "overlay" / "analysis.md").read_text()
    assert "seg (iv-tuning)" in md and "seg_full (full)" in md
    assert (tmp_path / "overlay" / "effective_rank.png").stat().st_size > 0
    assert set(result["files"]) == {"seg", "seg_full", "overlay"}


def test_overlay_of_different_token_grids_is_an_error(runs):
    # same tiny backbone, but SOD resizes to 96x128 while segmentation keeps the 256x320 scenes
    with pytest.raises(ConfigError, match="token grids differ at blocks.0 .16x20 vs 6x8.*not comparable"):
        analyze([runs["seg"], runs["sod"]], AnalysisOptions(max_images=1))


def test_overlay_of_different_backbones_is_an_error(runs, tmp_path):
    raw = yaml.safe_load(CONFIGS["seg"].read_text())
    raw["model"]["timm_kwargs"]["embed_dim"] = 32
    raw["train"]["output_dir"] = str(tmp_path)
    other = tmp_path / "wider.yaml"
    other.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="backbones differ.*embed_dim.*64.*32.*not comparable"):
        analyze([runs["seg"], other], AnalysisOptions(max_images=1))  # refused before any model is loaded


def test_cli_analyze(runs, tmp_path):
    cli = CliRunner()
    res = cli.invoke(main, ["analyze", str(runs["seg"]), "--max-images", "2", "--tokens-per-image", "16",
                            "--all-blocks"])
    assert res.exit_code == 0, res.output
    assert "blocks.1: effective rank" in res.output and "reference" in res.output
    res = cli.invoke(main, ["analyze", str(runs["seg"]), str(runs["det"]), "--max-images", "1"])
    assert res.exit_code == 2 and "error: cannot overlay" in res.output and "Traceback" not in res.output


def test_backbone_spectra_repeat_the_reference(runs):
    from ivtune.runner.analyze import backbone_spectra
    from ivtune.tasks import get_task

    options = AnalysisOptions(max_images=2, tokens_per_image=16)
    entry = analyze([runs["sod"]], options)["runs"][0]
    cfg, _ = resolve(runs["sod"])
    ref = reference_backbone(cfg)
    rows = backbone_spectra(ref, get_task("sod").build_dataset(cfg, "test", train=False), ref.input_multiple, options)
    assert rows == entry["reference"]["blocks"]  # the same tokens, by the documented sampling
