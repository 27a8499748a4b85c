"""A run directory is a transaction; weights prove themselves; bookkeeping never changes training (issue 18).

Every test trains the tiny synthetic segmentation config for a few steps on 64x80 scenes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ivtune.checkpoint as ckpt_io
from ivtune import build_backbone
from ivtune.checkpoint import atomic_write, load_adapter, save_adapter
from ivtune.data.scenes import write_synthetic_dataset
from ivtune.errors import CheckpointMismatchError, ConfigError, RunLockedError, StorageError
from ivtune.runner.predict import predict_pairs
from ivtune.runner.run import evaluate, load_run_model, resolve, train
from ivtune.runner.rundir import LOCK_FILE, Manifest, RunLock
from tests.helpers import TINY, retarget
from tests.task_tester import run_weights

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "seg" / "synthetic_tiny.yaml"
SMALL = ["data.num_samples=4", "data.height=64", "data.width=80", "data.crop_size=[64, 80]",
         "data.scale_range=[1.0, 1.0]", "train.progress_bar=false", "train.val_every=100", "optim.warmup_iters=1"]


def run_args(out: Path, name: str = "run", *extra: str) -> list[str]:
    return [f"train.output_dir={out}", f"train.run_name={name}", *SMALL, *extra]


def fingerprint(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of the run outside logs/ and tb/ (a launch adds a log version even when rejected)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.parts[len(run_dir.parts)] not in ("logs", "tb")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-step run (checkpoints at steps 2 and 4)."""
    out = tmp_path_factory.mktemp("integrity")
    return train(TINY_CONFIG, run_args(out, "run", "train.max_steps=4", "train.checkpoint_every=2"))


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A copy of the finished run that a test may damage; its config points at the copy."""
    copy = tmp_path / "runs" / "run"
    shutil.copytree(trained, copy)
    cfg = (copy / "config.yaml").read_text().replace(str(trained.parent), str(copy.parent))
    (copy / "config.yaml").write_text(cfg)
    return copy


def test_manifest_records_sha_and_step_of_every_weights_file(trained):
    manifest = json.loads((trained / "manifest.json").read_text())
    for rel in ("checkpoints/model.safetensors", "checkpoints/last.ckpt"):
        entry = manifest["files"][rel]
        assert entry["step"] == 4
        assert entry["sha256"] == hashlib.sha256((trained / rel).read_bytes()).hexdigest()
        assert entry["bytes"] == (trained / rel).stat().st_size
    from safetensors import safe_open

    with safe_open(str(trained / "checkpoints" / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["ivtune_step"] == "4" and len(meta["ivtune_tensors_sha256"]) == 64
    assert not (trained / LOCK_FILE).exists()  # released when train returned
    cfg, run_dir = resolve(trained)
    assert load_run_model(cfg, run_dir).weights_record["step"] == 4


# ------------------------------------------------------------------------------------------ rejected resumes
@pytest.mark.parametrize("case", ["other_method", "max_steps_below", "max_steps_equal", "zero_byte_ckpt",
                                  "garbage_ckpt", "swapped_ckpt"])
def test_rejected_resume_changes_nothing_and_eval_still_works(run_copy, case):
    ckpt = run_copy / "checkpoints" / "last.ckpt"
    overrides = ["train.max_steps=8"]
    if case == "other_method":
        overrides.append("model.method=full")
        match = r"last\.ckpt does not match the configured model: missing \(\d+\)"
    elif case == "max_steps_below":
        overrides = ["train.max_steps=3"]
        match = r"train\.max_steps is 3, at or below the step of .*last\.ckpt \(4\)"
    elif case == "max_steps_equal":
        overrides = []
        match = r"train\.max_steps is 4, at or below the step of .*last\.ckpt \(4\)"
    elif case == "zero_byte_ckpt":
        ckpt.write_bytes(b"")
        match = r"last\.ckpt is empty \(0 bytes\)"
    elif case == "garbage_ckpt":
        data = bytearray(ckpt.read_bytes())
        data[100:20_000] = os.urandom(19_900)  # same size: only the manifest's sha256 can tell
        ckpt.write_bytes(bytes(data))
        match = r"last\.ckpt is corrupted or was replaced: its sha256 is [0-9a-f]{64}, but [0-9a-f]{64} was recorded"
    else:  # a valid checkpoint, but not the one the manifest recorded
        torch.save({"global_step": 1, "state_dict": {}}, ckpt)
        match = r"corrupted or was replaced.*\(step 4\)"
    before = fingerprint(run_copy)
    error = ConfigError if case.startswith("max_steps") else CheckpointMismatchError
    with pytest.raises(error, match=match):
        train(run_copy, overrides, resume=True)
    assert fingerprint(run_copy) == before
    assert not (run_copy / LOCK_FILE).exists()
    results = evaluate(run_copy)
    assert 0.0 <= results["all"]["miou"] <= 100.0


def test_resume_with_more_classes_is_named_before_anything_is_written(tmp_path):
    root = write_synthetic_dataset(tmp_path / "data", {"train": 3, "test": 2}, height=64, width=80)
    config = retarget(TINY_CONFIG, "folders", tmp_path)
    args = [a for a in run_args(tmp_path / "runs") if not a.startswith(("data.num_samples", "data.height",
                                                                          "data.width"))]
    run_dir = train(config, args + [f"data.root={root}", "data.val_split=null", "train.max_steps=2",
                                    "train.checkpoint_every=2"])
    before = fingerprint(run_dir)
    classes = root / "classes.txt"
    classes.write_text(classes.read_text() + f"{len(classes.read_text().splitlines())} tree\n")
    with pytest.raises(CheckpointMismatchError, match=r"dataset no longer matches the run .*classes: run 6 entries, "
                                                      r"dataset now 7 \(added \[\"tree\"\]\)"):
        train(run_dir, ["train.max_steps=4"], resume=True)
    assert fingerprint(run_dir) == before


def test_new_train_into_a_trained_run_is_refused(run_copy):
    before = fingerprint(run_copy)
    with pytest.raises(ConfigError, match="already holds a trained run"):
        train(run_copy / "config.yaml", [])
    assert fingerprint(run_copy) == before


# ------------------------------------------------------------------------------------------ the lock
def test_second_train_into_a_held_run_names_the_holder(run_copy):
    before = fingerprint(run_copy)
    with RunLock(run_copy):
        with pytest.raises(RunLockedError, match=rf"in use by another `ivtune train` \(pid {os.getpid()} "):
            train(run_copy, ["train.max_steps=6"], resume=True)
    assert fingerprint(run_copy) == before


def test_stale_lock_of_a_killed_process_is_taken_over(run_copy):
    # a forked child, not a new interpreter: it has the lock code imported already (`python -c` spends ~8 s importing
    # torch and Lightning first), and it only takes the lock, says so and sleeps until it is killed
    ready, told = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            RunLock(run_copy).acquire()
            os.write(told, b"locked")
            time.sleep(120)
        finally:
            os._exit(1)
    os.close(told)
    try:
        assert os.read(ready, 16) == b"locked"
        with pytest.raises(RunLockedError, match=rf"pid {pid} "):
            RunLock(run_copy).acquire()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(ready)
    assert json.loads((run_copy / LOCK_FILE).read_text())["pid"] == pid  # left behind by the killed process
    lock = RunLock(run_copy).acquire()
    try:
        assert lock.stale_holder["pid"] == pid
        assert json.loads((run_copy / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not (run_copy / LOCK_FILE).exists()


def test_rejected_new_run_leaves_no_directory(tmp_path):
    with pytest.raises(ConfigError, match="crop_size"):
        train(TINY_CONFIG, run_args(tmp_path, "bad", "data.crop_size=[60, 80]"))
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------------ interrupted saves
def test_resume_removes_stale_tmp_and_continues(run_copy, caplog):
    stale = [run_copy / "checkpoints" / ".last.ckpt.x1y2.tmp", run_copy / "checkpoints" / ".model.safetensors.a.tmp",
             run_copy / ".manifest.json.b.tmp"]
    for p in stale:
        p.write_bytes(b"")  # what a kill -9 during a save leaves
    train(run_copy, ["train.max_steps=6"], resume=True)
    assert not any(p.exists() for p in stale)
    assert "removed 3 temporary file(s) left by an interrupted save" in caplog.text
    assert Manifest(run_copy).entry(run_copy / "checkpoints" / "model.safetensors")["step"] == 6


def test_eval_says_which_step_when_the_two_files_differ(run_copy, caplog):
    # a kill between the two files of a save: model.safetensors is written first, so it is one interval ahead
    manifest = Manifest(run_copy)
    entry = manifest.entry(run_copy / "checkpoints" / "last.ckpt")
    manifest.record(run_copy / "checkpoints" / "last.ckpt", entry["sha256"], 2)
    cfg, run_dir = resolve(run_copy)
    module = load_run_model(cfg, run_dir)
    assert module.weights_record["step"] == 4
    assert "holds step 4 but checkpoints/last.ckpt step 2" in caplog.text


def test_metrics_record_the_evaluated_weights_and_step(run_copy):
    evaluate(run_copy)
    out = run_copy / "eval" / "test"
    record = json.loads((out / "metrics.json").read_text())["evaluated"]
    weights = run_copy / "checkpoints" / "model.safetensors"
    assert record == {"file": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "step": 4,
                      "split": "test"}
    assert f"Evaluated weights: `{weights}` at training step 4" in (out / "metrics.md").read_text()


# ------------------------------------------------------------------------------------------ corrupted weights
@pytest.mark.parametrize("damage, match", [
    ("random_bytes", r"model\.safetensors is corrupted or was replaced: its sha256 is [0-9a-f]{64}, but "
                     r"[0-9a-f]{64} was recorded when it was written \(step 4\)"),
    ("random_bytes_no_manifest", r"model\.safetensors is corrupted: the digest of its tensors is [0-9a-f]{64}, but "
                                 r"its header records [0-9a-f]{64} \(step 4\)"),
    ("truncated", r"cannot read .*model\.safetensors \(\d+ bytes\) as a safetensors file: .*truncated or corrupted"),
    ("zero_bytes", r"model\.safetensors is empty \(0 bytes\)"),
])
def test_damaged_weights_are_named_errors_in_eval_and_predict(run_copy, tmp_path, damage, match):
    weights = run_copy / "checkpoints" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage.startswith("random_bytes"):
        data[-200_000:-100_000] = os.urandom(100_000)  # tensor bytes, same size: the header still parses
        if damage.endswith("no_manifest"):
            (run_copy / "manifest.json").unlink()
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = bytearray()
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointMismatchError, match=match):
        evaluate(run_copy)
    (tmp_path / "vis").mkdir()
    (tmp_path / "ir").mkdir()
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "vis" / "a.png")
    Image.fromarray(np.zeros((64, 80), np.uint8)).save(tmp_path / "ir" / "a.png")
    with pytest.raises(CheckpointMismatchError, match=match):
        predict_pairs(run_copy, tmp_path / "vis", tmp_path / "ir", tmp_path / "out")


def test_adapter_files_prove_themselves(tmp_path):
    name, kwargs, _, _ = TINY["vit"]
    save_adapter(build_backbone(name, **kwargs), tmp_path, step=7)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    weights = tmp_path / "adapter_model.safetensors"
    assert config["step"] == 7 and config["adapter_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    load_adapter(tmp_path)
    data = bytearray(weights.read_bytes())
    data[-5000:-1000] = os.urandom(4000)
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointMismatchError, match=r"adapter_model\.safetensors is corrupted or was replaced: .*"
                                                      r"\(step 7\)"):
        load_adapter(tmp_path)
    weights.write_bytes(bytes(data[:1000]))
    with pytest.raises(CheckpointMismatchError, match="cannot read .* as a safetensors file"):
        load_adapter(tmp_path)


# ------------------------------------------------------------------------------------------ a full disk
def _full_disk(monkeypatch) -> None:
    """What a full disk looks like to the writers: free space 0 (torch.save then reports only a short write)."""
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(ckpt_io.shutil, "disk_usage", lambda _: usage._replace(free=0))


def test_atomic_write_on_a_full_disk_says_so_and_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def short_write(tmp):
        Path(tmp).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match=rf"no space left on the device of {target}") as info:
        atomic_write(target, short_write)
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    _full_disk(monkeypatch)

    def torch_short_write(tmp):
        Path(tmp).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 512")

    with pytest.raises(StorageError, match="no space left .*unexpected pos"):
        atomic_write(target, torch_short_write)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    import ivtune.engine.checkpointing as checkpointing

    real_save = torch.save
    calls = []

    def failing_second_save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 2:  # the step-4 last.ckpt
            _full_disk(monkeypatch)
            Path(f).write_bytes(b"x" * 100)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 6848 vs 6746")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpointing.torch, "save", failing_second_save)
    with pytest.raises(StorageError, match=r"no space left on the device of .*last\.ckpt"):
        train(TINY_CONFIG, run_args(tmp_path, "run", "train.max_steps=4", "train.checkpoint_every=2"))
    monkeypatch.undo()
    run_dir = tmp_path / "run"
    assert not list((run_dir / "checkpoints").glob(".*.tmp")) and not (run_dir / LOCK_FILE).exists()
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    manifest = Manifest(run_dir)
    assert manifest.entry(run_dir / "checkpoints" / "last.ckpt")["step"] == 2
    assert manifest.entry(run_dir / "checkpoints" / "model.safetensors")["step"] == 4  # written before the failure
    evaluate(run_dir)
    train(run_dir, [], resume=True)  # resumes at step 2 and rewrites both
    assert manifest.entry(run_dir / "checkpoints" / "last.ckpt")["step"] == 4


def test_full_disk_during_predict_leaves_no_partial_image(run_copy, tmp_path, monkeypatch):
    (tmp_path / "vis").mkdir()
    (tmp_path / "ir").mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "vis" / f"{name}.png")
        Image.fromarray(np.zeros((64, 80), np.uint8)).save(tmp_path / "ir" / f"{name}.png")
    real_save = Image.Image.save
    count = []

    def save(self, fp, *args, **kwargs):
        count.append(fp)
        if len(count) == 4:  # the first file of the second pair
            Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "out"
    with pytest.raises(StorageError, match=rf"no space left on the device of {out / 'b_mask.png'}"):
        predict_pairs(run_copy, tmp_path / "vis", tmp_path / "ir", out)
    assert sorted(p.name for p in out.iterdir()) == ["a_color.png", "a_mask.png", "a_overlay.png"]
    for p in out.iterdir():
        Image.open(p).load()  # every file there is whole


# ------------------------------------------------------------------------------------------ determinism
def test_bookkeeping_intervals_do_not_change_the_trained_weights(tmp_path):
    common = ["train.max_steps=6"]
    a = train(TINY_CONFIG, run_args(tmp_path, "a", *common, "train.checkpoint_every=2", "train.val_every=3",
                                    "train.log_every=1"))
    b = train(TINY_CONFIG, run_args(tmp_path, "b", *common, "train.checkpoint_every=6", "train.val_every=100",
                                    "train.log_every=5"))
    wa, wb = run_weights(a), run_weights(b)
    assert set(wa) == set(wb)
    dropout = [k for k in wa if "adapter" in k]
    assert dropout  # adapter dropout is on (p = 0.1): the test sees the training randomness
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_lock_file_names_pid_while_training(tmp_path):
    import lightning.pytorch as pl

    seen = {}

    class Peek(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.update(json.loads((tmp_path / "run" / LOCK_FILE).read_text()))

    started = time.time()
    train(TINY_CONFIG, run_args(tmp_path, "run", "train.max_steps=1", "train.checkpoint_every=1"), callbacks=[Peek()])
    assert seen["pid"] == os.getpid() and time.time() - started < 120
    assert not (tmp_path / "run" / LOCK_FILE).exists()
