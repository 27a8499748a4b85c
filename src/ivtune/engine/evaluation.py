"""The evaluator contract and its one multi-GPU gather.

An evaluator collects what one rank saw (``process``), hands that state to the engine (``state``), takes every
rank's state back (``merge``) and computes the metrics (``evaluate``), in detectron2's ``DatasetEvaluator`` manner.
:func:`gather_evaluate` is the only place ranks exchange evaluation data: every rank's state goes to every rank
(``all_gather_object``), rank 0 computes, and the results are broadcast so each rank logs the same numbers. Each
image counts once: the engine never passes the padding that evens out the ranks (``meta["counted"] = False``).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Evaluator(Protocol):
    def reset(self) -> None:
        """Forget every processed sample (the start of a validation or test epoch)."""

    def process(self, batch: dict[str, Any], outputs: Any, keep: list[int]) -> None:
        """Take the model's ``outputs`` for the items ``keep`` (indices into the batch) of ``batch``."""

    def state(self) -> Any:
        """What this rank collected, picklable."""

    def merge(self, states: list[Any]) -> None:
        """Replace the collected state with the union of every rank's ``states`` (in rank order)."""

    def evaluate(self) -> dict[str, dict]:
        """``{row: metrics}`` (rows: ``all``, conditions, datasets ...) of everything merged."""


def _distributed() -> bool:
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_evaluate(evaluator: Evaluator) -> dict[str, dict]:
    """Merge every rank's state, evaluate on rank 0 and give every rank the same results."""
    if not _distributed():
        return evaluator.evaluate()
    dist = torch.distributed
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, evaluator.state())
    results: list[Any] = [None]
    if dist.get_rank() == 0:
        evaluator.merge(states)
        results = [evaluator.evaluate()]
    dist.broadcast_object_list(results, src=0)
    return results[0]
