"""Adapter-only checkpoints in the peft style: ``adapter_config.json`` + ``adapter_model.safetensors``.

Only the trainable tensors (plus the running statistics of BatchNorms inside trainable modules) are written,
so an IV-tuning checkpoint is a few percent of the backbone; the frozen weights come from timm / the weights file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .backbones.base import IVBackbone
from .backbones.weights import sha256_of
from .builder import build_backbone
from .errors import CheckpointMismatchError, StorageError, key_mismatch_detail
from .methods import get_method
from .version import __version__

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT = "ivtune-adapter/1"
# safetensors metadata every weights file ivtune writes carries: the training step and a digest of its tensors,
# so a file proves itself even without the run's manifest (docs: run directory in ivtune.runner.run)
STEP_KEY = "ivtune_step"
DIGEST_KEY = "ivtune_tensors_sha256"
_LOW_SPACE = 1 << 20  # bytes free below which a failed write is taken for a full disk


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters plus the buffers of modules whose parameters all train (e.g. adapter BN stats)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    for mod_name, mod in model.named_modules():
        params = list(mod.parameters(recurse=False))
        if params and all(p.requires_grad for p in params):
            prefix = f"{mod_name}." if mod_name else ""
            names.update(prefix + b for b, _ in mod.named_buffers(recurse=False))
    return {k: v.detach() for k, v in model.state_dict(keep_vars=True).items() if k in names and v is not None}


def atomic_write(path: Path, write: Any) -> str:
    """Call ``write(tmp_path)``, flush it to disk, then rename it over ``path``; returns the file's sha256.

    A killed process never leaves a half-written file under ``path`` (only a ``.NAME.*.tmp`` file, which a resumed
    run removes). A full disk or another OS failure is a :class:`StorageError` naming ``path``, and the temporary
    file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _storage_error(path, exc) from exc
    os.close(fd)
    try:
        write(tmp)
        digest = _hash_and_sync(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is an ordinary output
        os.replace(tmp, path)
    except BaseException as exc:
        full = _no_space(exc, path.parent)  # before the partial file is removed and frees its space
        Path(tmp).unlink(missing_ok=True)
        if full or isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise _storage_error(path, exc, full) from exc
        raise
    _sync_dir(path.parent)
    return digest


def _hash_and_sync(path: Path) -> str:
    """sha256 of ``path``, read once; also forces its data to disk so the rename never publishes a hole."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
        os.fsync(f.fileno())
    return h.hexdigest()


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # not every file system syncs directories; the rename itself is atomic either way
    finally:
        os.close(fd)


def _no_space(exc: BaseException, directory: Path) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, (RuntimeError, OSError)):  # torch.save reports a short write without errno
        try:
            return shutil.disk_usage(directory).free < _LOW_SPACE
        except OSError:
            return False
    return False


def _storage_error(path: Path, exc: BaseException, full: bool = False) -> StorageError:
    if full:
        err = StorageError(f"no space left on the device of {path}: {exc}. Nothing was written under that name "
                           "(the previous file, if any, is intact); free space or choose another output folder, and "
                           "run the command again.")
        err.errno = errno.ENOSPC
        return err
    reason = getattr(exc, "strerror", None) or str(exc)
    return StorageError(f"cannot write {path}: {reason}. Check the folder's permissions and free space.")


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors`` (sorted by name): what the file must hold."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_weights(path: str | Path, tensors: dict[str, torch.Tensor], fmt: str, step: int | None = None) -> str:
    """Write ``tensors`` as safetensors atomically, with ``format``, the step and the tensor digest in its metadata.

    Returns:
        The sha256 of the file written.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {"format": fmt, DIGEST_KEY: tensors_digest(tensors)}
    if step is not None:
        meta |= {STEP_KEY: str(int(step)), "global_step": str(int(step))}  # global_step: ivtune <= 0.2 readers
    return atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of a safetensors file; a missing, empty, truncated or garbled file is a named error.

    Raises:
        CheckpointMismatchError: the file cannot be read as safetensors (the message names it and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(f"{path} not found.")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointMismatchError(f"{path} is empty (0 bytes): a save or a copy of it was interrupted. Restore "
                                      "the file from where it came, or write it again.")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointMismatchError(
            f"cannot read {path} ({size} bytes) as a safetensors file: {exc}. The file is truncated or corrupted; "
            "restore it, or write it again.") from exc
    return tensors, meta


def verify_weights(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, str],
                   expected_sha256: str | None = None, step: int | None = None) -> None:
    """Check a file read by :func:`read_weights` against the sha256 recorded for it and its own tensor digest.

    Args:
        path: the file (its sha256 is computed when ``expected_sha256`` is given).
        tensors: its tensors, as read.
        meta: its metadata, as read.
        expected_sha256: the digest recorded when the file was written (a run's manifest, adapter_config.json).
        step: the training step recorded with it, for the message.

    Raises:
        CheckpointMismatchError: the file is not the one that was written, naming it, both digests and the step.
    """
    path = Path(path)
    step = step if step is not None else meta.get(STEP_KEY)
    at = f" (step {step})" if step is not None else ""
    if expected_sha256:
        actual = sha256_of(path)
        if actual != expected_sha256:
            raise CheckpointMismatchError(
                f"{path} is corrupted or was replaced: its sha256 is {actual}, but {expected_sha256} was recorded "
                f"when it was written{at}. Restore the file, or write it again (resume the run / save again).")
    want = meta.get(DIGEST_KEY)
    if want:
        got = tensors_digest(tensors)
        if got != want:
            raise CheckpointMismatchError(
                f"{path} is corrupted: the digest of its tensors is {got}, but its header records {want}{at}. "
                "Restore the file, or write it again.")


def save_adapter(model: nn.Module, directory: str | Path, step: int | None = None) -> Path:
    """Write ``directory/adapter_config.json`` and ``directory/adapter_model.safetensors``; returns the directory.

    The config is the backbone's ``build_config`` (timm name and kwargs, method and its ``method_config``, weights
    file and hash) plus versions, counts, the training ``step`` (when given) and ``adapter_sha256``, the digest
    :func:`load_adapter` checks the weights file against; sorted keys.
    """
    if not isinstance(model, IVBackbone):
        raise TypeError(f"save_adapter expects an IVBackbone (from ivtune.build_backbone), got {type(model).__name__}")
    directory = Path(directory)
    tensors = {k: v.contiguous().cpu() for k, v in trainable_state_dict(model).items()}
    config = {
        **model.build_config,
        "format": FORMAT,
        "ivtune_version": __version__,
        "timm_version": timm.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "num_tensors": len(tensors),
        "num_parameters": int(sum(v.numel() for v in tensors.values())),
    }
    if step is not None:
        config["step"] = int(step)
    config["adapter_sha256"] = save_weights(directory / WEIGHTS_NAME, tensors, FORMAT, step)
    atomic_write(directory / CONFIG_NAME,
                 lambda p: Path(p).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))
    return directory


def read_adapter_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointMismatchError(f"{path} not found: is {directory} a directory written by save_adapter?")
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise CheckpointMismatchError(f"{path} has format {config.get('format')!r}, expected {FORMAT!r}.")
    return config


def load_adapter(
    directory: str | Path,
    *,
    weights: str | Path | None = None,
    pretrained: bool | None = None,
    map_location: str | torch.device = "cpu",
) -> IVBackbone:
    """Rebuild the backbone described by ``directory`` and load its adapter tensors strictly.

    Args:
        directory: written by :func:`save_adapter`.
        weights: the frozen backbone's weights file; required when the adapter was trained on one
            (its sha256 is checked against the config).
        pretrained: load timm hub weights; defaults to what the adapter was trained with.
        map_location: device the adapter tensors are read to.

    Raises:
        CheckpointMismatchError: no adapter config, another format, the wrong backbone file, tensors that do
            not match the rebuilt model (every mismatch named), or a weights file that is empty, truncated or not
            the one written (its sha256 differs from ``adapter_sha256``).
    """
    directory = Path(directory)
    config = read_adapter_config(directory)
    whole_network = get_method(config.get("method", "iv-tuning")).trains_backbone  # the file holds every tensor
    want_sha = config.get("weights_sha256")
    if weights is not None and want_sha:
        got = sha256_of(weights)
        if got != want_sha:
            raise CheckpointMismatchError(
                f"{weights} (sha256 {got[:12]}...) is not the backbone file this adapter was trained on "
                f"({config.get('weights_file')}, sha256 {want_sha[:12]}...). Pass the original file."
            )
    elif weights is None and config.get("weights_file") and not whole_network:
        raise CheckpointMismatchError(
            f"the adapter in {directory} was trained on the frozen backbone file {config['weights_file']!r} "
            f"(sha256 {want_sha}); pass weights=PATH to that file."
        )
    if pretrained is None:
        pretrained = bool(config.get("pretrained")) and weights is None and not whole_network
    model = build_backbone(
        config["name"],
        method=config["method"],
        pretrained=pretrained,
        weights=weights,
        out_indices=config.get("out_indices"),
        **_method_arguments(config),
        **config.get("timm_kwargs", {}),
    )
    path = directory / WEIGHTS_NAME
    tensors, meta = read_weights(path, device=map_location)
    load_trainable(model, tensors, source=str(path))  # a file for another model: every key named first
    verify_weights(path, tensors, meta, config.get("adapter_sha256"), config.get("step"))
    return model


def _method_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """``build_backbone`` keywords for the method's hyperparameters.

    Folders of ivtune 0.1 have no ``method_config``: their only recorded hyperparameter is the top-level
    ``adapter_dropout``, and every other one had today's default, which ``method_config=None`` reproduces.
    """
    if "method_config" in config:
        return {"method_config": config["method_config"]}
    return {"adapter_dropout": config.get("adapter_dropout", 0.1)}


def load_trainable(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load tensors saved by :func:`trainable_state_dict`, failing with every mismatch named."""
    expected = trainable_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(f"{k}: file {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
                    for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape)
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(f"{source} does not match the model: "
                                      + key_mismatch_detail(missing, unexpected, shapes))
    result = model.load_state_dict(tensors, strict=False)
    if result.unexpected_keys:  # cannot happen after the check above; keep the guarantee explicit
        warnings.warn(f"unexpected keys while loading {source}: {result.unexpected_keys}", stacklevel=2)
