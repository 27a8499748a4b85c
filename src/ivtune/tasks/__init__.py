"""Tasks. Each task module gives the engine (:mod:`ivtune.engine.run`) the same small interface:

- ``build_dataset(cfg, split, train, strict=True)``: a dataset with ``len()`` and ``scan()`` (a report with ``ok``
  and ``format()``), transforms from ``cfg.data`` (training augmentation when ``train``);
- ``dataset_info(dataset) -> dict``: what eval / predict need without the data (class names, colours ...), JSON;
- ``build_module(cfg, info) -> LightningModule``: has ``.model`` (whose ``.backbone`` is an ``IVBackbone``) and,
  after ``trainer.test``, ``.eval_results`` (``{condition or dataset: metrics}``);
- ``build_datamodule(cfg) -> LightningDataModule``;
- ``write_eval_report(results, info, out_dir)``: metrics files and plots;
- ``format_results(results) -> str``: one line per row for the terminal;
- ``predict(module, cfg, pairs, out_dir, device) -> list[Path]``: ``pairs`` from :func:`ivtune.predict.match_pairs`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ConfigError

TASK_MODULES = {"seg": "ivtune.tasks.seg", "det": "ivtune.tasks.det", "sod": "ivtune.tasks.sod"}


def get_task(name: str) -> ModuleType:
    """The task module for ``cfg.task``."""
    if name not in TASK_MODULES:
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(TASK_MODULES)}")
    try:
        return importlib.import_module(TASK_MODULES[name])
    except ModuleNotFoundError as e:
        if e.name == TASK_MODULES[name]:
            raise ConfigError(f"task {name!r} has no engine in this version of ivtune") from e
        raise
