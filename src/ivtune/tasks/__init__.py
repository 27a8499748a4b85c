"""The task slices. Each is a vertical slice (``seg/``, ``sod/``, ``det/``: datasets, transforms, model and heads,
metrics and evaluator, the typed ``data:`` section, the task object) over the shared layer (:mod:`ivtune.data`,
:mod:`ivtune.engine`, :mod:`ivtune.config`) and the model side; a slice never imports another slice.

Importing this package registers every built-in task with :func:`ivtune.engine.task.register_task`.
"""

from ..engine.task import TASKS, Task, get_task, register_task
from .det import TASK as DET
from .seg import TASK as SEG
from .sod import TASK as SOD

for _task in (SEG, SOD, DET):
    if _task.name not in TASKS:
        register_task(_task)

__all__ = ["TASKS", "Task", "get_task", "register_task"]
