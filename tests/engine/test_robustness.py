"""Sensor faults through the engine and the CLI: ``ivtune eval --degrade`` on every task's tiny config, targets
that stay in the visible frame through each task's pipelines, one missing-modality convention in training and
evaluation, errors that list the valid specs, and resume with modality dropout bit-identical."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ivtune.cli import main
from ivtune.data.degrade import DEGRADE_SUITE, parse_degradation, sample_rng
from ivtune.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from ivtune.engine.datamodule import PairedDataModule, SeededView, TrainingFaults, fill_means_of
from ivtune.engine.sampling import StepBatchSampler
from ivtune.errors import ConfigError
from ivtune.runner import load_config
from ivtune.runner.robustness import (
    ConditionRows,
    Metric,
    RobustnessReport,
    drops,
    parse_degradations,
    write_robustness,
)
from ivtune.runner.run import evaluate, evaluate_robustness, train
from ivtune.tasks import get_task
from tests.task_tester import assert_same_weights, crash_run

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "seg": REPO / "configs" / "seg" / "synthetic_tiny.yaml",
    "sod": REPO / "configs" / "sod" / "synthetic_tiny.yaml",
    "det": REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml",
}
# a few steps on 4 scenes per split: the point is the plumbing, not the scores
TINY_RUN = ["train.max_steps=2", "train.checkpoint_every=2", "train.val_every=100", "train.log_every=1",
            "data.num_samples=4", "data.batch_size=2", "data.eval_batch_size=2", "optim.warmup_iters=0"]
TARGET = {"seg": "mask", "sod": "mask", "det": "boxes"}


def _common(tmp: Path, *extra: str) -> list[str]:
    return [f"train.output_dir={tmp}", "train.run_name=run", "train.progress_bar=false", *extra]


def _batches(cfg, degradation=None, seed: int = 0) -> list[dict]:
    task = get_task(cfg.task)
    dm = PairedDataModule(cfg, task.build_dataset, task.collate, degradation, seed)
    return list(dm.test_dataloader())


def _stack(x) -> torch.Tensor:
    return torch.stack(list(x)) if isinstance(x, (list, tuple)) else x


# `make test` (CI) runs the end-to-end eval on segmentation; detection and SOD share the runner path (`slow`)
@pytest.fixture(scope="module", params=[pytest.param(t, marks=() if t == "seg" else pytest.mark.slow)
                                        for t in sorted(CONFIGS)])
def tiny_run(request, tmp_path_factory) -> tuple[str, Path]:
    task = request.param
    tmp = tmp_path_factory.mktemp(task)
    return task, train(CONFIGS[task], _common(tmp, *TINY_RUN))


# ------------------------------------------------------------------------------------------- eval end to end


def test_cli_degrade_end_to_end(tiny_run):
    task, run_dir = tiny_run
    args = ["eval", str(run_dir), "--degrade", "ir:missing", "--degrade", "vis:missing", "--degrade", "shift=6,-2",
            "--degrade", "ir:noise=10", "--degrade", "IR:Missing"]  # the last is a duplicate of the first
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "robustness" in res.output and "shift=6,-2" in res.output
    out = run_dir / "eval" / "test"
    payload = json.loads((out / "metrics.json").read_text())
    rob = payload["robustness"]
    assert rob["task"] == task and rob["degradations"] == ["ir:missing", "vis:missing", "shift=6,-2", "ir:noise=10"]
    # every task reports condition rows: seg / det from their evaluators, SOD through ConditionRows
    expected_rows = {"seg": ["all", "day", "night"], "det": ["all", "day", "night"],
                     "sod": ["synthetic/test", "day", "night"]}[task]
    assert rob["rows"] == expected_rows
    clean = rob["results"]["clean"]
    for entry in rob["table"]:
        assert entry["clean"] == pytest.approx(clean[entry["row"]][entry["metric"]])
        if entry["value"] is not None and entry["clean"] is not None:
            sign = 1 if next(m for m in rob["metrics"] if m["key"] == entry["metric"])["higher_is_better"] else -1
            assert entry["drop"] == pytest.approx(sign * (entry["clean"] - entry["value"]))
    # the task's own report is the clean one, as without --degrade (SOD keeps its per-dataset rows only)
    own = {k: v for k, v in payload.items() if k not in ("robustness", "evaluated")}
    if task == "sod":
        assert set(own) == {"synthetic/test"}
    assert (out / "robustness.png").stat().st_size > 1000
    md = (out / "metrics.md").read_text()
    assert "## Robustness" in md and "`vis:missing`" in md and "drop %" in md

    # seeded: the same command gives the same table (ir:noise draws random numbers per sample)
    again = evaluate_robustness(run_dir, ["ir:noise=10"], seed=0)
    saved = rob["results"]["ir:noise=10"]
    assert {r: {k: again.degraded["ir:noise=10"][r][k] for k in v} for r, v in saved.items()} == saved
    # evaluate() without degradations returns the same clean rows as the robustness run
    plain = evaluate(run_dir)
    first = rob["metrics"][0]["key"]
    assert {k: v[first] for k, v in plain.items()} == pytest.approx(
        {k: v[first] for k, v in clean.items() if k in plain})


def test_vis_only_model_ignores_every_ir_fault(tmp_path):
    """``vis-only-full`` never reads IR: every IR fault scores exactly the clean mIoU, a VIS fault does not."""
    run_dir = train(CONFIGS["seg"], _common(tmp_path, *TINY_RUN, "model.method=vis-only-full"))
    report = evaluate_robustness(run_dir, ["ir:missing", "ir:noise=20", "rotate=10", "vis:missing"])
    for d in ("ir:missing", "ir:noise=20", "rotate=10"):
        for row in report.rows:
            assert report.degraded[d][row]["miou"] == report.clean[row]["miou"], (d, row)
    assert report.degraded["vis:missing"]["all"]["pixel_acc"] != report.clean["all"]["pixel_acc"]


# ------------------------------------------------------------------------------------ targets and convention


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_eval_faults_move_only_the_ir_image(task, tmp_path):
    """Through each task's real evaluation pipeline: VIS and targets equal the clean batch, IR is what the fault
    makes of it, and a missing modality is exactly 0 after normalisation."""
    cfg = load_config(CONFIGS[task], _common(tmp_path, "data.num_samples=2", "data.eval_batch_size=2"))
    clean = _batches(cfg)[0]
    for spec in ("shift=5,3", "rotate=7", "ir:missing"):
        batch = _batches(cfg, parse_degradation(spec, fill_means_of(cfg)))[0]
        torch.testing.assert_close(_stack(batch["vis"]), _stack(clean["vis"]), rtol=0, atol=0)
        for a, b in zip(batch[TARGET[task]], clean[TARGET[task]], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # boxes / masks stay in the visible frame
        assert not torch.equal(_stack(batch["ir"]), _stack(clean["ir"])), spec
    ir = _stack(_batches(cfg, parse_degradation("ir:missing", fill_means_of(cfg)))[0]["ir"])
    assert torch.count_nonzero(ir) == 0 and not torch.signbit(ir).any()  # +0.0 exactly
    vis = _stack(_batches(cfg, parse_degradation("vis:missing", fill_means_of(cfg)))[0]["vis"])
    assert torch.count_nonzero(vis) == 0


def test_shift_moves_the_ir_image_by_the_given_pixels(tmp_path):
    """On the segmentation evaluation pipeline (no resize): the degraded IR is the clean one moved right by 5 and
    down by 3; the uncovered border is the IR fill 114 = rint(255 * 0.449), normalised per replicated channel."""
    cfg = load_config(CONFIGS["seg"], _common(tmp_path, "data.num_samples=1", "data.eval_batch_size=1"))
    clean = _batches(cfg)[0]["ir"][0]
    moved = _batches(cfg, parse_degradation("shift=5,3", fill_means_of(cfg)))[0]["ir"][0]
    assert moved.shape[0] == 3  # data.ir_channels: 3, ImageNet statistics per channel
    torch.testing.assert_close(moved[:, 3:, 5:], clean[:, :-3, :-5], rtol=0, atol=0)
    border = torch.tensor([(114 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    for region in (moved[:, :3, :], moved[:, :, :5]):
        torch.testing.assert_close(region, border.view(3, 1, 1).expand_as(region), rtol=0, atol=1e-6)


@pytest.mark.parametrize("task", sorted(CONFIGS))
def test_training_faults_keep_the_transform_stream_and_targets(task, tmp_path):
    """``train.misalign`` / ``train.modality_dropout`` on each task's training pipeline: with the same item seed
    the crop, flip and jitter are unchanged, so VIS and targets equal the fault-free sample; only IR moves."""
    cfg = load_config(CONFIGS[task], _common(tmp_path, "data.num_samples=3"))
    t = get_task(task)
    ds = t.build_dataset(cfg, "train", True)
    plain = SeededView(ds)
    means = fill_means_of(cfg)
    shifted = SeededView(ds, TrainingFaults(misalign=6, fill_means=means))
    for item in [(0, 11), (1, 12), (2, 13), (1, 99)]:
        a, b = plain[item], shifted[item]
        torch.testing.assert_close(b["vis"], a["vis"], rtol=0, atol=0)
        torch.testing.assert_close(b[TARGET[task]], a[TARGET[task]], rtol=0, atol=0)
        assert b["ir"].shape == a["ir"].shape
        c = SeededView(ds, TrainingFaults(modality_dropout=1.0, fill_means=means))[item]
        torch.testing.assert_close(c[TARGET[task]], a[TARGET[task]], rtol=0, atol=0)
        rng = sample_rng(item[1], "train", "modality_dropout")  # the documented draws: u, then 0 = VIS / 1 = IR
        rng.random()
        gone, kept = ("vis", "ir") if int(rng.integers(0, 2)) == 0 else ("ir", "vis")
        assert c["meta"]["missing"] == [gone]
        assert torch.count_nonzero(c[gone]) == 0  # the convention of evaluation's vis:missing / ir:missing
        torch.testing.assert_close(c[kept], a[kept], rtol=0, atol=0)
        # deterministic by item seed
        torch.testing.assert_close(shifted[item]["ir"], b["ir"], rtol=0, atol=0)
    assert any(not torch.equal(shifted[i]["ir"], plain[i]["ir"]) for i in [(0, 11), (1, 12), (2, 13)])


def test_fill_means_follow_the_ir_normalisation(tmp_path):
    seg = load_config(CONFIGS["seg"], _common(tmp_path))
    assert fill_means_of(seg) == {"vis": (0.485, 0.456, 0.406), "ir": ((0.485 + 0.456 + 0.406) / 3,)}
    assert fill_means_of(load_config(CONFIGS["sod"], _common(tmp_path)))["ir"] == (0.0,)  # ir_norm: unit
    ms = load_config(CONFIGS["seg"], _common(tmp_path, "data.ir_norm=meanstd", "data.ir_mean=0.3",
                                             "data.ir_std=0.2"))
    assert fill_means_of(ms)["ir"] == (0.3,)
    assert parse_degradation("ir:missing", fill_means_of(ms)).ir_fill == 76  # rint(255 * 0.3)


def test_training_fault_config_is_checked(tmp_path):
    assert TrainingFaults.from_config(load_config(CONFIGS["seg"], _common(tmp_path))) is None
    cfg = load_config(CONFIGS["seg"], _common(tmp_path, "train.modality_dropout=0.3", "train.misalign=4"))
    assert TrainingFaults.from_config(cfg) == TrainingFaults(0.3, 4, fill_means_of(cfg))
    with pytest.raises(ConfigError, match=r"train\.modality_dropout.*\[0, 1\].*1\.5"):
        load_config(CONFIGS["seg"], _common(tmp_path, "train.modality_dropout=1.5"))
    with pytest.raises(ConfigError, match=r"train\.misalign.*>= 0"):
        load_config(CONFIGS["seg"], _common(tmp_path, "train.misalign=-2"))
    with pytest.raises(ConfigError, match=r"train\.misalign"):
        load_config(CONFIGS["seg"], _common(tmp_path, "train.misalign=2.5"))


# ------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("spec, why", [
    ("ir:mising", r"Unknown degradation 'ir:mising'\. Did you mean 'ir:missing'"),
    ("fog=0.5", r"Unknown degradation 'fog=0\.5'"),
    ("vis:blur=4", r"K must be an odd integer >= 3, got 4"),
    ("shift=3", r"needs 2 parameter\(s\), got 1"),
    ("vis:dark=abc", r"G must be a number, got 'abc'"),
])
def test_cli_bad_spec_is_an_error_listing_the_valid_ones(spec, why, tmp_path):
    # a config without any trained run: the spec is checked before a model is needed
    res = CliRunner().invoke(main, ["eval", str(CONFIGS["seg"]), "--set", f"train.output_dir={tmp_path}",
                                    "--degrade", "ir:missing", "--degrade", spec])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and "Traceback" not in res.output
    assert re.search(why, res.output), res.output
    for form in ("ir:missing", "vis:dark=G[,E]", "shift=DX,DY", "rotate=DEG", "ir:saturate[=T]"):
        assert form in res.output


def test_cli_bad_seed_and_no_degradation():
    res = CliRunner().invoke(main, ["eval", str(CONFIGS["seg"]), "--degrade-suite", "--degrade-seed", "-1"])
    assert res.exit_code == 2 and "seed must be an integer >= 0" in res.output
    with pytest.raises(ConfigError, match="needs degradations"):
        evaluate_robustness(CONFIGS["seg"])


def test_parse_degradations_suite_then_extras_each_once():
    got = [d.name for d in parse_degradations(["ir:noise=10", "shift=8,0", "vis:glare=0.3"], suite=True)]
    assert got == [*DEGRADE_SUITE, "vis:glare=0.3"]
    assert parse_degradations() == []


# ------------------------------------------------------------------------------------------------- report


def test_report_drops_and_files(tmp_path):
    clean = {"synthetic/test": {"Sm": 0.8, "MAE": 0.1, "num_images": 4}}
    degraded = {"ir:missing": {"synthetic/test": {"Sm": 0.6, "MAE": 0.15, "num_images": 4}}}
    report = RobustnessReport("sod", "test", 0, (Metric("Sm", "S"), Metric("MAE", "MAE", False)), clean, degraded)
    rows = {(e["degradation"], e["metric"]): e for e in report.table()}
    assert rows[("ir:missing", "Sm")]["drop"] == pytest.approx(0.2)
    assert rows[("ir:missing", "Sm")]["rel_drop"] == pytest.approx(25.0)
    assert rows[("ir:missing", "MAE")]["drop"] == pytest.approx(0.05)  # lower is better: an increase is a drop
    assert rows[("ir:missing", "MAE")]["rel_drop"] == pytest.approx(50.0)
    assert rows[("clean", "Sm")]["drop"] == 0.0
    assert drops(0.0, 1.0, True) == (-1.0, None) and drops(None, 1.0, True) == (None, None)
    (tmp_path / "metrics.json").write_text(json.dumps({"synthetic/test": clean["synthetic/test"]}))
    (tmp_path / "metrics.md").write_text("| task table |\n")
    write_robustness(report, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["synthetic/test"] == clean["synthetic/test"] and saved["robustness"]["degradations"] == ["ir:missing"]
    md = (tmp_path / "metrics.md").read_text()
    assert md.startswith("| task table |") and "| `ir:missing` | 0.60 | +0.20 | +25.00 |" in md
    assert "| `ir:missing` | 0.15 | +0.05 | +50.00 |" in md


class _Count:
    """A toy evaluator: counts the items it was given, one row."""

    def reset(self):
        self.n = 0

    def process(self, batch, outputs, keep):
        self.n += len(keep)

    def state(self):
        return self.n

    def merge(self, states):
        self.n = sum(states)

    def evaluate(self):
        return {"synthetic/test": {"n": self.n}}


def test_condition_rows_split_and_merge_like_ranks():
    added: set[str] = set()
    ranks = [ConditionRows(_Count, added) for _ in range(2)]
    for ev in ranks:
        ev.reset()
    meta = [{"condition": "day"}, {"condition": "night"}, {"condition": "day"}, {"condition": None}]
    ranks[0].process({"meta": meta}, None, [0, 1, 2, 3])
    ranks[1].process({"meta": meta[:2]}, None, [0])  # rank 1 saw one day image (and a padding item)
    assert ranks[0].evaluate() == {"synthetic/test": {"n": 4}, "day": {"n": 2}, "night": {"n": 1}}
    merged = ConditionRows(_Count, added)
    merged.merge([r.state() for r in ranks])
    assert merged.evaluate() == {"synthetic/test": {"n": 5}, "day": {"n": 3}, "night": {"n": 1}}
    assert added == {"day", "night"}


# ------------------------------------------------------------------------------------------------- resume


@pytest.mark.slow  # three short trainings; resume itself is in CI (tests/seg, tests/det)
def test_resume_with_modality_dropout_matches_uninterrupted_run(tmp_path):
    common = ["train.max_steps=8", "train.checkpoint_every=4", "train.val_every=100", "data.num_samples=8",
              "train.modality_dropout=0.5", "train.misalign=4"]
    cfg = load_config(CONFIGS["seg"], _common(tmp_path, *common))
    # the faults do fire in this run: count the dropped modalities of its 8 x 4 items
    sampler = StepBatchSampler(8, cfg.data.batch_size, 8, seed=cfg.train.seed)
    ds = get_task("seg").build_dataset(cfg, "train", True)
    faults = TrainingFaults.from_config(cfg)
    dropped = sum(bool(faults(ds.load_raw(i), s)["meta"].get("missing")) for b in sampler for i, s in b)
    assert 6 <= dropped <= 26

    straight = train(CONFIGS["seg"], _common(tmp_path / "a", *common))
    crashed = crash_run(CONFIGS["seg"], _common(tmp_path / "b", *common), tmp_path / "b" / "run", crash_at=5,
                        last_checkpoint=4)
    a = assert_same_weights(straight, train(crashed, resume=True))
    assert np.isfinite([float(v.float().abs().sum()) for v in a.values()]).all()
    # the data module of train() is the one that applies them
    loader = PairedDataModule(cfg, get_task("seg").build_dataset, get_task("seg").collate).train_dataloader()
    assert loader.dataset.faults == faults
