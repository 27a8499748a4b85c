"""Configs in the layout before the task data sections (run directories and files written by ivtune <= 0.9).

That layout put dataset and task options in an untyped ``data.options`` mapping, gave every task the
segmentation keys ``crop_size`` / ``scale_range`` (a crop for segmentation, the resize size for SOD, unused by
detection) and had no ``model.method_config``. :func:`upgrade_layout` rewrites such a mapping into today's layout
before any check, so the usual errors (unknown key, file and line) apply to what it moved:

- every ``data.options.KEY`` becomes ``data.KEY`` (its line number moves with it);
- SOD: ``data.crop_size`` becomes ``data.size``; ``data.scale_range`` is dropped (SOD never read it);
- detection: ``data.crop_size`` (always null there) and ``data.scale_range`` are dropped;
- ``model.adapter_init`` / ``model.adapter_dropout`` keep their meaning (shortcuts of ``model.method_config``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

LEGACY_UNUSED = {"det": ("crop_size", "scale_range"), "sod": ("scale_range",)}


def is_legacy(raw: dict[str, Any]) -> bool:
    data = raw.get("data")
    return isinstance(data, dict) and "options" in data


def upgrade_layout(raw: dict[str, Any], origin: Any) -> dict[str, Any]:
    """Today's layout of ``raw`` (modified in place and returned); a mapping already in it is returned unchanged."""
    if not is_legacy(raw):
        return raw
    data = raw["data"]
    options = data.pop("options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"'data.options' in {origin.where('data.options')} must be a mapping, got "
                          f"{type(options).__name__}")
    task = raw.get("task")
    if task == "sod" and "crop_size" in data:
        data["size"] = data.pop("crop_size")
        _move_line(origin, "data.crop_size", "data.size")
    for key in LEGACY_UNUSED.get(task, ()):
        data.pop(key, None)
    for key, value in options.items():
        if key in data:
            raise ConfigError(f"'data.options.{key}' in {origin.where('data.options.' + str(key))} repeats the key "
                              f"'data.{key}'; keep one")
        data[key] = value
        _move_line(origin, f"data.options.{key}", f"data.{key}")
    return raw


def _move_line(origin: Any, old: str, new: str) -> None:
    lines = getattr(origin, "lines", None)
    if lines is None:
        return
    for key in [k for k in lines if k == old or k.startswith(old + ".")]:
        lines[new + key[len(old):]] = lines.pop(key)
