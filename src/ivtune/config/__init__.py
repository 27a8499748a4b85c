"""Typed run configuration: the schema engine, the run schema and the tasks' data sections.

- :mod:`ivtune.config.engine`: coercion, checks, unknown-key errors with file, line and suggestion, ``--set``, YAML.
- :mod:`ivtune.config.run`: ``task``, ``model``, ``optim``, ``train`` and the root :class:`Config`.
- :mod:`ivtune.config.data`: the keys every task's ``data:`` section shares and the registry tasks add theirs to.
- :mod:`ivtune.config.legacy`: reads configs written before the task data sections.
"""

from .data import DataConfig, register_data_section, registered_tasks, task_datasets
from .run import (
    ACCELERATORS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    Config,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

__all__ = ["Config", "ModelConfig", "DataConfig", "OptimConfig", "TrainConfig", "load_config", "config_from_dict",
           "config_to_dict", "save_config", "register_data_section", "registered_tasks", "task_datasets",
           "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "ACCELERATORS"]
