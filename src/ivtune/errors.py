"""Error types. Each also inherits the builtin a caller would expect, so ``except ValueError`` keeps working."""

from __future__ import annotations


class IVTuneError(Exception):
    """Base class of every error ``ivtune`` raises on purpose."""


class ConfigError(IVTuneError, ValueError):
    """A configuration value (argument, YAML key, CLI option) is invalid."""


class InputShapeError(IVTuneError, ValueError):
    """An input tensor has a shape or dtype the model cannot take."""


class UnsupportedModelError(IVTuneError, ValueError):
    """The timm model, or one of its blocks, has no IV-tuning recipe."""


class CheckpointMismatchError(IVTuneError, ValueError):
    """A weights or adapter file does not match the model: missing, unexpected or mis-shaped tensors."""


class WeightsUnavailableError(IVTuneError, RuntimeError):
    """Pretrained weights could not be fetched (no network, no cache) or the file is unreadable."""


class DataError(IVTuneError, ValueError):
    """A dataset file is missing, unreadable or inconsistent with its partner."""


class StorageError(IVTuneError, OSError):
    """A file could not be written (no space left, no permission); nothing partial is left under its name."""


class RunLockedError(IVTuneError, RuntimeError):
    """Another process holds the run directory (``ivtune train`` into the same run)."""


def key_mismatch_detail(missing: list[str], unexpected: list[str], mis_shaped: list[str], shown: int = 12) -> str:
    """``missing (2): a, b; unexpected (1): c`` for the non-empty lists, each cut to ``shown`` names."""
    parts = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
        if keys:
            parts.append(f"{title} ({len(keys)}): " + ", ".join(keys[:shown]) + (" ..." if len(keys) > shown else ""))
    return "; ".join(parts)
