"""Train and evaluate runs: pre-flight checks, the Lightning Trainer, the run directory.

A run directory (``{train.output_dir}/{train.run_name}``) holds everything about one run::

    config.yaml                    the resolved config (``ivtune train RUN --resume`` and ``ivtune eval RUN`` read it)
    dataset_info.json              the dataset facts eval / predict need (class names, palette, ignore index)
    manifest.json                  sha256, training step and size of every weights file written (runner.rundir)
    checkpoints/last.ckpt          resume state: trainable tensors + optimiser + scheduler + loop counters
    checkpoints/model.safetensors  trainable tensors (adapters + head) for eval / predict, step + digest inside
    logs/version_N/metrics.csv     CSV log (one version per launch; a resumed run adds one)
    tb/                            TensorBoard events
    eval/<split>/                  metrics.json, metrics.md, per-class IoU plot, training curves

``train`` holds the directory's lock (``.ivtune.lock``) from start to end and checks the config, the dataset and,
on ``--resume``, the checkpoint against each other before it writes anything into the directory.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from ..backbones.weights import sha256_of
from ..checkpoint import atomic_write, load_trainable, read_weights, verify_weights
from ..config import Config, config_from_dict, config_to_dict, load_config, save_config
from ..engine.checkpointing import LAST_CKPT, MODEL_FILE, AtomicCheckpointIO, RunCheckpoint
from ..engine.datamodule import PairedDataModule
from ..errors import CheckpointMismatchError, ConfigError, DataError
from ..tasks import Task, get_task
from .report import extend_report
from .rundir import (
    Manifest,
    RunLock,
    check_resume_dataset,
    check_resume_model,
    check_resume_step,
    config_changes,
    is_launcher_process,
    read_resume_checkpoint,
    remove_stale_tmp,
)

CONFIG_FILE = "config.yaml"
DATASET_INFO = "dataset_info.json"
log = logging.getLogger("ivtune")


def run_dir_of(cfg: Config) -> Path:
    name = cfg.train.run_name or (Path(cfg.source).stem if cfg.source else "run")
    return Path(cfg.train.output_dir) / name


def resolve(config_or_run: str | Path | Config, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Config, Path]:
    """A YAML config, a :class:`Config` or a run directory -> (config, run directory)."""
    if isinstance(config_or_run, Config):
        if overrides:
            config_or_run = config_from_dict(config_to_dict(config_or_run), config_or_run.source or "<config>",
                                             overrides=overrides)
        return config_or_run, run_dir_of(config_or_run)
    path = Path(config_or_run)
    if path.is_dir():
        cfg_file = path / CONFIG_FILE
        if not cfg_file.is_file():
            raise ConfigError(f"{path} is a directory without {CONFIG_FILE}: not a run directory written by "
                              "`ivtune train`. Pass the run directory or a YAML config.")
        cfg = load_config(cfg_file, overrides)
        return cfg, path
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: pass a YAML config (e.g. configs/seg/synthetic_tiny.yaml) or a "
                          "run directory (e.g. runs/synthetic_tiny).")
    cfg = load_config(path, overrides)
    return cfg, run_dir_of(cfg)


def datamodule_of(task: Task, cfg: Config) -> PairedDataModule:
    """The data module of a run: the task's datasets, batched by its collate."""
    return PairedDataModule(cfg, task.build_dataset, task.collate)


def _preflight(cfg: Config, task: Task, splits: list[str], action: str = "nothing was trained") -> Any:
    """Everything a scan can find before hours of training (or an evaluation): datasets complete and readable,
    sizes compatible, something to learn from; the counted repairs (clipped boxes, files not used ...) are shown as
    ``data check`` shows them. Returns the first split's dataset."""
    problems: list[str] = []
    first = None
    for split in splits:
        ds = task.build_dataset(cfg, split, train=False, strict=False)
        first = first or ds
        if len(ds) == 0:
            problems.append(f"split {split!r} of {cfg.data.dataset} at {cfg.data.root} has no pairs")
            continue
        report = ds.scan()
        if not report.ok:
            problems.append(f"split {split!r}:\n{report.format()}")
        elif lines := report.summary_lines():
            (log.warning if report.repairs else log.info)("data split %r: %s", split, "\n".join(lines))
    if problems:
        raise DataError(f"the dataset has problems; {action}:\n" + "\n".join(problems)
                        + f"\nFix them (see `ivtune data check {cfg.source or 'CONFIG'}`) and start again.")
    return first


def _check_sizes(cfg: Config, model) -> None:
    """A fixed training crop must fit the patch grid (segmentation's ``crop_size``; other tasks pad inside)."""
    multiple = model.backbone.input_multiple
    crop = getattr(cfg.data, "crop_size", None)
    if crop and any(v % multiple for v in crop):
        h, w = crop
        raise ConfigError(
            f"data.crop_size {list(crop)} in {cfg.source} is not a multiple of the input multiple (the patch size "
            f"or, for Hiera, 32) {multiple} of {cfg.model.backbone}; use "
            f"{[-(-h // multiple) * multiple, -(-w // multiple) * multiple]}."
        )


def build_trainer(cfg: Config, run_dir: Path, *, for_training: bool) -> pl.Trainer:
    t = cfg.train
    callbacks: list[pl.Callback] = []
    if for_training:
        callbacks.append(RunCheckpoint(run_dir / "checkpoints", t.checkpoint_every, Manifest(run_dir).record))
    if t.progress_bar:
        callbacks.append(RichProgressBar() if sys.stdout.isatty() else TQDMProgressBar(refresh_rate=t.log_every))
    # training is one epoch of max_steps batches (see engine.sampling): validation is counted in batches
    trainer_kwargs = {"val_check_interval": min(t.val_every, t.max_steps)} if for_training else {}
    o = cfg.optim
    if o.grad_clip_norm is not None:  # total-norm clipping (the detection recipe)
        trainer_kwargs |= {"gradient_clip_val": o.grad_clip_norm, "gradient_clip_algorithm": "norm"}
    elif o.grad_clip_value is not None:  # element-wise clamp (the SOD recipe: [-0.5, 0.5])
        trainer_kwargs |= {"gradient_clip_val": o.grad_clip_value, "gradient_clip_algorithm": "value"}
    loggers = [CSVLogger(save_dir=run_dir, name="logs")] if for_training else []
    if for_training:
        loggers.append(TensorBoardLogger(save_dir=run_dir, name="tb", version="", default_hp_metric=False))
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        max_steps=t.max_steps if for_training else -1,
        max_epochs=1 if for_training else None,
        log_every_n_steps=t.log_every,
        num_sanity_val_steps=0,
        enable_checkpointing=False,  # RunCheckpoint writes the trainable-only checkpoints
        use_distributed_sampler=False,  # our samplers shard by rank themselves (and resume by step)
        deterministic=t.deterministic,
        default_root_dir=run_dir,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=t.progress_bar,
        enable_model_summary=for_training,
        # adapter BNs see the global batch, as in one process; torch's SyncBatchNorm runs on GPUs only
        sync_batchnorm=_world_size(t) > 1 and t.accelerator not in ("cpu", "mps"),
        **trainer_kwargs,  # validation interval, gradient clipping
    )


def _world_size(t) -> int:
    devices = t.devices
    n = devices if isinstance(devices, int) and devices > 0 else len(str(devices).split(",")) if "," in str(
        devices) else 1
    return n * t.num_nodes


def train(
    config_or_run: str | Path | Config,
    overrides: list[str] | tuple[str, ...] = (),
    resume: bool = False,
    callbacks: list[pl.Callback] | None = None,
) -> Path:
    """Train the run described by a config (or continue the run in a run directory with ``resume``).

    Args:
        config_or_run: a YAML config, or a run directory (its ``config.yaml``).
        overrides: ``key=value`` strings, as ``--set`` takes them.
        resume: continue from ``checkpoints/last.ckpt`` of the run directory.
        callbacks: extra Lightning callbacks.

    Returns:
        The run directory.
    """
    cfg, run_dir = resolve(config_or_run, overrides)
    writer = is_launcher_process()  # DDP ranks > 0 re-run this function inside the run rank 0 holds
    with RunLock(run_dir) if writer else nullcontext():
        if writer:
            remove_stale_tmp(run_dir)  # under the lock: no save of this run is in progress
        task, module, info = _checked_run(config_or_run, cfg, run_dir, resume)
        # everything is checked: only now does the run directory change
        if writer:
            atomic_write(run_dir / CONFIG_FILE, lambda tmp: save_config(cfg, tmp))
            atomic_write(run_dir / DATASET_INFO, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=2) + "\n"))
        trainer = build_trainer(cfg, run_dir, for_training=True)
        trainer.callbacks.extend(callbacks or [])
        ckpt = run_dir / "checkpoints" / LAST_CKPT
        trainer.fit(module, datamodule=datamodule_of(task, cfg), ckpt_path=str(ckpt) if resume else None)
    return run_dir


def _checked_run(config_or_run: str | Path | Config, cfg: Config, run_dir: Path, resume: bool
                 ) -> tuple[Task, Any, dict[str, Any]]:
    """``(task, module, dataset info)`` of a run about to train, after every check that needs no writing: the
    resume checkpoint (readable, verified, before ``train.max_steps``), the dataset (scan) and, on resume, the
    dataset and the model against the checkpoint. Writes nothing."""
    ckpt = run_dir / "checkpoints" / LAST_CKPT
    state = None
    if resume:
        state = read_resume_checkpoint(ckpt, Manifest(run_dir))
        check_resume_step(state, ckpt, cfg.train.max_steps)  # before a long dataset scan
        saved = run_dir / CONFIG_FILE
        if saved.is_file():
            try:
                changed = config_changes(config_to_dict(load_config(saved)), config_to_dict(cfg))
            except ConfigError:
                changed = ["(the saved config no longer loads)"]
            if changed:
                log.warning("--resume: using the given config, which differs from the run's %s in: %s", saved,
                            ", ".join(changed))
    elif ckpt.is_file() or (run_dir / "checkpoints" / MODEL_FILE).is_file():
        raise ConfigError(f"{run_dir} already holds a trained run ({ckpt.parent}). Continue it with --resume, or "
                          "start a new one with --set train.run_name=NEW_NAME.")
    pl.seed_everything(cfg.train.seed, workers=True, verbose=False)
    task = get_task(cfg.task)
    ds = _preflight(cfg, task, [s for s in (cfg.data.train_split, cfg.data.val_split) if s])
    info = task.dataset_info(ds)
    if state is not None:
        check_resume_dataset(info, run_dir / DATASET_INFO)
    module = build_module_seeded(task, cfg, info)
    _check_sizes(cfg, module.model)
    if state is not None:
        check_resume_model(state, ckpt, module)
    return task, module, info


def build_module_seeded(task: Task, cfg: Config, info: dict[str, Any]):
    """Build the task module right after seeding with ``train.seed``.

    Checkpoints hold only trainable tensors; the frozen weights come from the hub or a file, or, for a random-init
    backbone (tests, the demo's fallback), from this seed: train, eval and predict must all draw them the same way.
    """
    pl.seed_everything(cfg.train.seed, verbose=False)
    return task.build_module(cfg, info)


def load_run_model(cfg: Config, run_dir: Path, task: Task | None = None):
    """The task module of a run with its trained tensors loaded strictly from ``checkpoints/model.safetensors``.

    The file is verified first: against the sha256 the run's manifest recorded and its own tensor digest, so an
    empty, truncated, corrupted or swapped file is a named error. ``module.weights_record`` says what was loaded
    (``file``, ``sha256``, ``step``); evaluation reports carry it.
    """
    task = task or get_task(cfg.task)
    weights = run_dir / "checkpoints" / MODEL_FILE
    if not weights.is_file():
        raise CheckpointMismatchError(f"{weights} not found: the run has not finished a checkpoint interval yet "
                                      "(train.checkpoint_every).")
    info_file = run_dir / DATASET_INFO
    if not info_file.is_file():
        raise CheckpointMismatchError(f"{info_file} not found: is {run_dir} a run directory written by ivtune train?")
    try:
        info = json.loads(info_file.read_text())
    except ValueError as exc:
        raise CheckpointMismatchError(f"{info_file} is not valid JSON ({exc}); it is written by ivtune train: restore "
                                      "it from the run's dataset, or retrain.") from exc
    manifest = Manifest(run_dir)
    entry = manifest.entry(weights)
    tensors, meta = read_weights(weights)
    step = entry["step"] if entry else _int_or_none(meta.get("ivtune_step", meta.get("global_step")))
    verify_weights(weights, tensors, meta, entry["sha256"] if entry else None, step)
    ckpt_entry = manifest.entry(run_dir / "checkpoints" / LAST_CKPT)
    if ckpt_entry and step is not None and ckpt_entry["step"] != step:
        log.warning("%s holds step %s but checkpoints/%s step %s: the run stopped between writing the two; this "
                    "uses step %s (ivtune train %s --resume brings both to the same step)", weights, step, LAST_CKPT,
                    ckpt_entry["step"], step, run_dir)
    module = build_module_seeded(task, cfg, info)
    try:
        load_trainable(module, tensors, source=str(weights))
    except CheckpointMismatchError as err:
        if "regression_head.scales" in str(err):  # the only key that differs between the two FCOS box-side heads
            raise CheckpointMismatchError(
                f"{err}. The run's FCOS box sides differ from the config's model.head_kwargs.fcos_box_sides: runs "
                "trained before ivtune had that option used torchvision's head; evaluate them with --set "
                "model.head_kwargs.fcos_box_sides=relu (a file without 'regression_head.scales') or =exp.") from err
        raise
    module.weights_record = {"file": str(weights), "sha256": entry["sha256"] if entry else sha256_of(weights),
                             "step": step}
    log.info("weights: %s (step %s)", weights, step)
    return module.eval()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def evaluate(config_or_run: str | Path | Config, split: str | None = None, overrides: list[str] | tuple[str, ...] = (),
             out_dir: Path | None = None, degrade: list[str] | tuple[str, ...] = (), degrade_suite: bool = False,
             degrade_seed: int = 0) -> dict[str, dict]:
    """Evaluate a trained run on ``split`` (default: the config's test split); writes metrics and plots.

    Args:
        config_or_run: a run directory, or the config it was trained from.
        split: the split to score; default ``data.test_split`` (else ``data.val_split``).
        overrides: ``key=value`` strings, as ``--set`` takes them.
        out_dir: where the report goes; default ``RUN/eval/<split>``.
        degrade: sensor-fault specs (``ir:missing``, ``vis:dark=2.5``, ``shift=8,0`` ...; docs/METHOD.md section
            14): the run is also scored under each, and the robustness table goes into ``metrics.json`` /
            ``metrics.md`` with ``robustness.png`` (:func:`evaluate_robustness` returns it).
        degrade_suite: add the standard suite (:data:`ivtune.data.degrade.DEGRADE_SUITE`).
        degrade_seed: evaluation seed of the random degradations (glare position, IR noise).

    Returns:
        The clean results, ``{row: metrics}`` (rows: ``all`` and the conditions, or SOD's datasets).
    """
    return _evaluate(config_or_run, split, overrides, out_dir, degrade, degrade_suite, degrade_seed)[0]


def evaluate_robustness(config_or_run: str | Path | Config, degrade: list[str] | tuple[str, ...] = (),
                        suite: bool = False, split: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                        out_dir: Path | None = None, seed: int = 0):
    """Score a trained run clean and under each sensor fault; writes the reports of :func:`evaluate`.

    Returns:
        The :class:`ivtune.runner.robustness.RobustnessReport` (its ``clean`` rows are :func:`evaluate`'s result).

    Raises:
        ConfigError: no degradation asked for, or an unknown / malformed spec (the message lists the valid ones).
    """
    if not degrade and not suite:
        raise ConfigError("evaluate_robustness needs degradations: pass degrade=[SPEC, ...] and/or suite=True "
                          "(ivtune eval RUN --degrade SPEC / --degrade-suite).")
    return _evaluate(config_or_run, split, overrides, out_dir, degrade, suite, seed)[1]


def _evaluate(config_or_run, split, overrides, out_dir, degrade, suite, seed):
    """Clean evaluation (and, with degradations, one more per degradation): ``(clean results, report or None)``."""
    from ..data.degrade import sample_rng
    from ..engine.datamodule import fill_means_of
    from ..viz import plot_training_curves
    from .robustness import RobustnessReport, parse_degradations, per_condition_rows, task_metrics, write_robustness

    cfg, run_dir = resolve(config_or_run, overrides)
    if split is not None:
        cfg = replace(cfg, data=replace(cfg.data, test_split=split))
    split = cfg.data.test_split or cfg.data.val_split
    degradations = parse_degradations(degrade, suite, fill_means_of(cfg))  # a bad spec fails before any model
    if degradations:
        sample_rng(seed, "")  # and so does a bad seed
    task = get_task(cfg.task)
    # the same scan as at the start of train: what is repaired or not used in the scored split is shown with counts
    _preflight(cfg, task, [str(split)], action="nothing was evaluated")
    module = load_run_model(cfg, run_dir, task)
    trainer = build_trainer(cfg, run_dir, for_training=False)

    def test(datamodule: PairedDataModule) -> dict[str, dict]:
        trainer.test(module, datamodule=datamodule, verbose=False)
        return module.eval_results

    with per_condition_rows(module, cfg.task, enabled=bool(degradations)) as added:
        results = test(datamodule_of(task, cfg))
        degraded = {}
        for k, d in enumerate(degradations):
            log.info("robustness %d/%d: %s", k + 1, len(degradations), d.name)
            degraded[d.name] = test(PairedDataModule(cfg, task.build_dataset, task.collate, d, seed))
    clean = {row: res for row, res in results.items() if row not in added}  # the task's own rows, as without faults
    report = None
    if degradations:
        report = RobustnessReport(cfg.task, str(split), seed, task_metrics(cfg.task, results).metrics, results,
                                  degraded)
    out = out_dir or run_dir / "eval" / str(split)
    if trainer.is_global_zero:
        out.mkdir(parents=True, exist_ok=True)
        task.write_report(clean, json.loads((run_dir / DATASET_INFO).read_text()), out)
        record_evaluated_weights(out, {**module.weights_record, "split": str(split)})
        csv = latest_metrics_csv(run_dir)
        if csv is not None:
            plot_training_curves(csv, out / "training_curves.png")
        if report is not None:
            write_robustness(report, out)
    return clean, report


def record_evaluated_weights(out_dir: Path, record: dict[str, Any]) -> None:
    """Say in ``metrics.json`` (key ``evaluated``) and ``metrics.md`` which weights file, digest and training step
    the numbers come from, so a report can be traced to its checkpoint after the run trains on."""
    extend_report(out_dir, "evaluated", record,
                  f"Evaluated weights: `{record['file']}` at training step {record['step']} "
                  f"(sha256 {str(record['sha256'])[:16]}...), split `{record['split']}`.")


def latest_metrics_csv(run_dir: Path) -> Path | None:
    """The CSV log of the run's latest launch (a resumed run adds a ``version_N``), or None before any log row."""
    csvs = sorted((Path(run_dir) / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    return csvs[-1] if csvs else None
