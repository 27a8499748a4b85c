"""The runner: what the ``ivtune`` command and the public Python API do with a config or a run directory.

It resolves a run, looks its task up in the registry (importing :mod:`ivtune.tasks` registers them) and drives the
engine: :func:`train`, :func:`evaluate`, :func:`predict`, ``data check`` and the demo. It sits above the tasks; the
engine below them never imports a task.
"""

from .predict import predict_pairs as predict
from .run import evaluate, load_config, load_run_model, resolve, train

__all__ = ["train", "evaluate", "predict", "load_config", "load_run_model", "resolve"]
