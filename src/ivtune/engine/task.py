"""The task contract: what a task slice (``ivtune.tasks.<name>``) gives the engine and the runner.

A task is one registered :class:`Task` object, in the spirit of peft's ``register_peft_method`` and detectron2's
dataset / evaluator registries: the runner looks it up by ``cfg.task`` and calls its members; the engine below it
never imports a task. Each slice registers itself when ``ivtune.tasks`` is imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import register_data_section
from ..errors import ConfigError

# (cfg, split, train, strict) -> dataset with len(), load_raw(i), transform, scan()
BuildDataset = Callable[..., Any]


@dataclass(frozen=True)
class Task:
    """One task: its data, its model and how its results are scored, written and shown.

    Attributes:
        name: the ``task:`` value of a config (``seg``, ``sod``, ``det``).
        description: one line for ``ivtune --help`` and errors.
        data_config: the task's typed ``data:`` section (a subclass of :class:`ivtune.config.DataConfig`).
        datasets: dataset name -> registry entry (its builder, splits and options; the task's own type).
        build_dataset: ``(cfg, split, train, strict=True)`` -> dataset; transforms from ``cfg.data``.
        collate: batches samples of that dataset.
        dataset_info: dataset -> JSON-ready facts eval / predict need without the data (class names, palette ...).
        build_module: ``(cfg, info)`` -> the task's :class:`ivtune.engine.module.IVTaskModule`.
        write_report: ``(results, info, out_dir)``: metrics files and plots of ``ivtune eval``.
        format_results: results -> one line per row for the terminal.
        predict: ``(module, cfg, pairs, out_dir, device)`` -> written files; pairs are ``(name, vis, ir)`` paths.
    """

    name: str
    description: str
    data_config: type
    datasets: Mapping[str, Any]
    build_dataset: BuildDataset
    collate: Callable[[list], Any]
    dataset_info: Callable[[Any], dict[str, Any]]
    build_module: Callable[..., Any]
    write_report: Callable[[dict[str, dict], dict[str, Any], Path], None]
    format_results: Callable[[dict[str, dict]], str]
    predict: Callable[..., list[Path]]


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to :data:`TASKS` and its data section to the config schema; a second registration is an error."""
    if task.name in TASKS:
        raise ConfigError(f"task {task.name!r} is already registered")
    TASKS[task.name] = task
    register_data_section(task.name, task.data_config, task.datasets)
    return task


def get_task(name: str) -> Task:
    """The registered task ``name`` (``import ivtune.tasks`` registers the built-in ones)."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown task {name!r}; registered: {', '.join(TASKS) or 'none'}.{hint}")
    return TASKS[name]
