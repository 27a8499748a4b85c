"""A run directory as a transaction: one writer at a time, weights that prove themselves, nothing written unchecked.

- :class:`RunLock`: ``RUN/.ivtune.lock``, an exclusive lock held for the whole of ``ivtune train``. It is an OS
  lock (``flock``), so the kernel releases it when its process dies: a lock file left by a killed process is stale
  and the next ``train`` takes it over; a live holder is named by its pid.
- :class:`Manifest`: ``RUN/manifest.json``, the sha256, training step and size of every weights file the run
  wrote (``checkpoints/model.safetensors``, ``checkpoints/last.ckpt``); eval, predict and resume verify the files
  against it.
- :func:`read_resume_checkpoint` and the ``check_resume_*`` functions: everything a ``--resume`` needs (a
  readable, verified ``last.ckpt``; a ``train.max_steps`` past its step; the dataset's classes as trained; tensors
  that fit the configured model) is checked *before* ``train`` writes into the run, so a rejected resume leaves
  every file as it was.
- :func:`remove_stale_tmp`: the ``.NAME.*.tmp`` files a killed save leaves (:func:`ivtune.checkpoint.atomic_write`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import atomic_write, trainable_state_dict
from ..errors import CheckpointMismatchError, ConfigError, RunLockedError, key_mismatch_detail

try:  # POSIX; elsewhere train runs without the lock (and says so)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_FILE = ".ivtune.lock"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "ivtune-run-manifest/1"
log = logging.getLogger("ivtune")


# ---------------------------------------------------------------------------------------------------- the lock
def is_launcher_process() -> bool:
    """True unless this process is a rank > 0 that a launcher started (Lightning's DDP children, torchrun).

    Those re-run ``ivtune train`` inside the run their rank-0 process already holds: they neither lock nor write.
    """
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "GROUP_RANK"))


class RunLock:
    """The exclusive lock of a run directory (a context manager); creates the directory.

    Args:
        run_dir: the run directory.

    Attributes:
        stale_holder: what a stale lock file said about its (dead) holder, when one was taken over.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.stale_holder: dict[str, Any] | None = None
        self._fd: int | None = None
        self._created_dir = False

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLockedError` naming the process that holds it."""
        if fcntl is None:  # pragma: no cover
            log.warning("no file locking on this platform: nothing stops two `ivtune train` in %s", self.run_dir)
            return self
        self._created_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"{self.run_dir} is in use by another `ivtune train` ({_describe(holder)}; lock file "
                    f"{self.path}). Wait for it to finish or stop it, or train into another directory with --set "
                    "train.run_name=NEW_NAME.") from None
            # the previous holder may have removed the file between our open and flock: lock the file on disk
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous.get("pid") not in (None, os.getpid()):
            self.stale_holder = previous
            log.warning("%s: took over a stale lock (%s, no longer running: killed or crashed)", self.path,
                        _describe(previous))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": " ".join(sys.argv[:4])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and let go (and remove the run directory if the lock created it and it is empty)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked: a waiting process re-checks the inode
        finally:
            os.close(self._fd)
            self._fd = None
        if self._created_dir:
            try:
                self.run_dir.rmdir()  # a run rejected before anything was written leaves no empty directory
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "pid unknown"
    return f"pid {holder.get('pid')} on {holder.get('host', '?')}, since {holder.get('since', '?')}"


def remove_stale_tmp(run_dir: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes in the run directory and its ``checkpoints``.

    Only call it while holding the :class:`RunLock`: then no save of this run is in progress.
    """
    run_dir = Path(run_dir)
    stale = [p for d in (run_dir, run_dir / "checkpoints") if d.is_dir() for p in sorted(d.glob(".*.tmp"))
             if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        log.warning("removed %d temporary file(s) left by an interrupted save: %s", len(stale),
                    ", ".join(str(p) for p in stale))
    return stale


# ---------------------------------------------------------------------------------------------------- the manifest
class Manifest:
    """``RUN/manifest.json``: ``{"format", "files": {relative path: {"sha256", "step", "bytes"}}}``.

    Only rank 0 of ``train`` writes it (through :meth:`record`, the ``record`` callback of
    :class:`ivtune.engine.checkpointing.RunCheckpoint`), each time atomically.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / MANIFEST_FILE

    def _key(self, path: str | Path) -> str:
        path = Path(path)
        try:
            return path.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    def read(self) -> dict[str, Any]:
        """The manifest (an empty one for runs written before ivtune kept one)."""
        if not self.path.is_file():
            return {"format": MANIFEST_FORMAT, "files": {}}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointMismatchError(
                f"{self.path} is unreadable ({exc}): it records the checksums of the run's weights. Restore it, or "
                "delete it to use the weights unchecked.") from exc
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise CheckpointMismatchError(f"{self.path} is not an ivtune run manifest (no 'files' mapping); restore "
                                          "it, or delete it to use the weights unchecked.")
        return data

    def entry(self, path: str | Path) -> dict[str, Any] | None:
        """What was recorded for ``path`` (``sha256``, ``step``, ``bytes``), or None."""
        return self.read()["files"].get(self._key(path))

    def record(self, path: str | Path, sha256: str, step: int) -> None:
        """Record a file just written (its digest and the training step it holds)."""
        data = self.read()
        data["format"] = MANIFEST_FORMAT
        data["files"][self._key(path)] = {"sha256": sha256, "step": int(step), "bytes": Path(path).stat().st_size}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))


# ---------------------------------------------------------------------------------------------------- resume
def read_resume_checkpoint(ckpt: Path, manifest: Manifest) -> dict[str, Any]:
    """``last.ckpt`` read and verified: empty, truncated, garbled or not-the-written files are named errors.

    Returns:
        The checkpoint dictionary (tensors on the CPU).
    """
    if not ckpt.is_file():
        raise CheckpointMismatchError(f"--resume: {ckpt} not found; the run has no checkpoint yet. Start it "
                                      "without --resume.")
    fix = (f"Resume needs an intact {ckpt.name}: restore it, or train from scratch into another run "
           "(--set train.run_name=NEW_NAME); `ivtune eval` still uses checkpoints/model.safetensors.")
    size = ckpt.stat().st_size
    if size == 0:
        raise CheckpointMismatchError(f"{ckpt} is empty (0 bytes): a save was interrupted. {fix}")
    entry = manifest.entry(ckpt)
    if entry is not None:
        from ..backbones.weights import sha256_of

        actual = sha256_of(ckpt)
        if actual != entry["sha256"]:
            raise CheckpointMismatchError(
                f"{ckpt} is corrupted or was replaced: its sha256 is {actual}, but {entry['sha256']} was recorded "
                f"in {manifest.path} when it was written (step {entry.get('step')}). {fix}")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage, a pickle of something else: all the same to the user
        raise CheckpointMismatchError(f"cannot read {ckpt} ({size} bytes): {type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''}. {fix}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict) or "global_step" not in state:
        raise CheckpointMismatchError(f"{ckpt} is not an ivtune / Lightning checkpoint (no state_dict and "
                                      f"global_step). {fix}")
    return state


def check_resume_step(state: dict[str, Any], ckpt: Path, max_steps: int) -> int:
    """The checkpoint's step, which ``train.max_steps`` must exceed (else a :class:`ConfigError` saying both)."""
    step = int(state["global_step"])
    if max_steps <= step:
        raise ConfigError(
            f"--resume: train.max_steps is {max_steps}, at or below the step of {ckpt} ({step}): there is nothing "
            f"left to train. Resume with a larger value (e.g. --set train.max_steps={2 * step}), or evaluate the "
            "run as it is (ivtune eval RUN).")
    return step


def check_resume_dataset(info: dict[str, Any], saved_info: Path) -> None:
    """The dataset facts now (``task.dataset_info``) must equal the run's ``dataset_info.json``.

    Raises:
        CheckpointMismatchError: naming every fact that changed (class list, ignore index, palette ...).
    """
    if not saved_info.is_file():
        return
    try:
        before = json.loads(saved_info.read_text())
    except (OSError, ValueError):
        return  # unreadable: rewritten from the dataset; the checkpoint's tensor shapes decide what fits
    changed = sorted(k for k in set(before) | set(info) if before.get(k) != info.get(k))
    if changed:
        detail = "; ".join(f"{k}: {_difference(before.get(k), info.get(k))}" for k in changed)
        raise CheckpointMismatchError(
            f"--resume: the dataset no longer matches the run ({saved_info}): {detail}. Resume with the data the run "
            "was trained on, or train a new run (--set train.run_name=NEW_NAME).")


def check_resume_model(state: dict[str, Any], ckpt: Path, module: torch.nn.Module) -> None:
    """The checkpoint's tensors must be the configured model's trainable ones, by name and shape.

    Raises:
        CheckpointMismatchError: listing the missing, unexpected and mis-shaped tensors.
    """
    expected = {k: tuple(v.shape) for k, v in trainable_state_dict(module).items()}
    got = {k: tuple(v.shape) for k, v in state["state_dict"].items()}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    shapes = sorted(f"{k}: checkpoint {got[k]} vs model {v}" for k, v in expected.items() if k in got and got[k] != v)
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(
            f"--resume: {ckpt} does not match the configured model: " + key_mismatch_detail(missing, unexpected, shapes)
            + ". Was it written with another config (backbone, method, head, classes)? Resume with the run's own "
            "config (ivtune train RUN --resume, without --set model.*), or train a new run.")


def _difference(before: Any, after: Any, limit: int = 200) -> str:
    """``run X, dataset now Y``, for lists with what was added and removed."""
    if isinstance(before, list) and isinstance(after, list):
        added = [v for v in after if v not in before]
        removed = [v for v in before if v not in after]
        what = ", ".join(part for part in (f"added {json.dumps(added)}" if added else "",
                                           f"removed {json.dumps(removed)}" if removed else "") if part)
        text = f"run {len(before)} entries, dataset now {len(after)} ({what or 'same entries, another order'})"
    else:
        text = f"run {json.dumps(before)}, dataset now {json.dumps(after)}"
    return text if len(text) <= limit else text[:limit] + "..."


def config_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out
