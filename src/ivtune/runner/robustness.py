"""Robustness evaluation: one trained run scored clean and under each sensor fault (docs/METHOD.md section 14).

``ivtune eval RUN --degrade SPEC`` (repeatable) and ``--degrade-suite`` (:data:`ivtune.data.degrade.DEGRADE_SUITE`)
score the test split once clean and once per degradation; the faults are applied by the data module
(:class:`ivtune.engine.datamodule.PairedDataModule`) after loading and before normalisation, seeded per sample, so
every method and every run sees the same degraded images. The result is one :class:`RobustnessReport` per run:
each task's headline metrics (:data:`TASK_METRICS`) per row (``all`` and each condition, day / night / fog), the
value under each degradation, its absolute drop and its drop relative to the clean value. It is written into the
evaluation folder beside the task's own report: a ``robustness`` entry in ``metrics.json``, a section appended to
``metrics.md`` and ``robustness.png``.

Tasks whose evaluator does not split by condition (SOD reports rows per dataset) get condition rows from
:func:`per_condition_rows`, which feeds each condition's samples to an evaluator of its own.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.degrade import DEGRADE_SUITE, SUITE_RATIONALE, Degradation, parse_degradation
from .report import extend_report

CLEAN = "clean"
REPORT_PNG = "robustness.png"


@dataclass(frozen=True)
class Metric:
    """A headline metric of a task's results rows.

    Attributes:
        key: the key in a results row (``miou``).
        label: its name in tables (``mIoU``).
        higher_is_better: direction; the drop is ``clean - value`` when True, ``value - clean`` otherwise, so a
            positive drop always means worse than clean.
    """

    key: str
    label: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class TaskMetrics:
    """What the robustness table reports for a task, and whether its evaluator already has condition rows."""

    metrics: tuple[Metric, ...]
    rows_by_condition: bool


TASK_METRICS: dict[str, TaskMetrics] = {
    "seg": TaskMetrics((Metric("miou", "mIoU"),), rows_by_condition=True),
    "det": TaskMetrics((Metric("mAP", "mAP"), Metric("AP50", "AP50")), rows_by_condition=True),
    "sod": TaskMetrics((Metric("Sm", "S_alpha"), Metric("MAE", "MAE", higher_is_better=False)),
                       rows_by_condition=False),
}
"""Headline metrics per built-in task; any other task reports every numeric key of its first row (higher better)."""


def task_metrics(task: str, results: Mapping[str, Mapping[str, Any]]) -> TaskMetrics:
    """The :class:`TaskMetrics` of ``task`` (a fallback from the numeric keys of ``results`` for other tasks)."""
    if task in TASK_METRICS:
        return TASK_METRICS[task]
    first = next(iter(results.values()), {})
    keys = [k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return TaskMetrics(tuple(Metric(k, k) for k in keys), rows_by_condition=False)


def parse_degradations(specs: Sequence[str] = (), suite: bool = False,
                       fill_means: Mapping[str, Any] | None = None) -> list[Degradation]:
    """The degradations of one evaluation: the standard suite (if ``suite``) then ``specs``, each once.

    Every spec is parsed before anything is evaluated, so a typo fails in seconds, not after the clean pass.

    Args:
        specs: ``--degrade`` values (``ir:missing``, ``shift=8,0`` ...); a spec equal to an earlier one (same
            canonical name) is kept once.
        suite: prepend :data:`ivtune.data.degrade.DEGRADE_SUITE`.
        fill_means: the run's normalisation means (:func:`ivtune.engine.datamodule.fill_means_of`).

    Raises:
        ConfigError: an unknown name or a bad parameter; the message lists every valid spec.
    """
    out: dict[str, Degradation] = {}
    for spec in [*(DEGRADE_SUITE if suite else ()), *specs]:
        d = parse_degradation(spec, fill_means)
        out.setdefault(d.name, d)
    return list(out.values())


# ------------------------------------------------------------------------------------------- condition rows


class ConditionRows:
    """An evaluator that adds one row per condition to an evaluator whose rows are not conditions.

    The samples of each condition (``meta["condition"]``) also go to an evaluator of their own, built by ``make``;
    :meth:`evaluate` returns the inner rows plus, per condition, that evaluator's rows, named ``day`` when the inner
    evaluator has one row and ``"{row} day"`` otherwise. The names it added are recorded in ``added``.

    Args:
        make: builds a fresh inner evaluator (the module's ``make_evaluator`` for the stage).
        added: collects the row names this evaluator added.
    """

    def __init__(self, make: Callable[[], Any], added: set[str]) -> None:
        self.make, self.added = make, added
        self.inner = make()
        self.by_condition: dict[str, Any] = {}

    def _fresh(self) -> Any:
        ev = self.make()
        ev.reset()
        return ev

    def reset(self) -> None:
        self.inner.reset()
        self.by_condition = {}

    def process(self, batch: dict[str, Any], outputs: Any, keep: list[int]) -> None:
        self.inner.process(batch, outputs, keep)
        groups: dict[str, list[int]] = {}
        for i in keep:
            cond = (batch["meta"][i] or {}).get("condition")
            if cond:
                groups.setdefault(str(cond), []).append(i)
        for cond, rows in groups.items():
            if cond not in self.by_condition:
                self.by_condition[cond] = self._fresh()
            self.by_condition[cond].process(batch, outputs, rows)

    def state(self) -> tuple[Any, dict[str, Any]]:
        return self.inner.state(), {c: ev.state() for c, ev in self.by_condition.items()}

    def merge(self, states: list[tuple[Any, dict[str, Any]]]) -> None:
        self.inner.merge([s[0] for s in states])
        self.by_condition = {}
        for cond in sorted({c for _, per in states for c in per}):  # a rank may hold none of a condition
            ev = self._fresh()
            ev.merge([per[cond] for _, per in states if cond in per])
            self.by_condition[cond] = ev

    def evaluate(self) -> dict[str, dict]:
        rows = self.inner.evaluate()
        out = dict(rows)
        for cond, ev in sorted(self.by_condition.items()):
            for key, res in ev.evaluate().items():
                name = cond if len(rows) == 1 else f"{key} {cond}"
                if name not in out:
                    out[name] = res
                    self.added.add(name)
        return out


@contextlib.contextmanager
def per_condition_rows(module: Any, task: str, enabled: bool = True) -> Iterator[set[str]]:
    """While active, ``module``'s evaluators report condition rows too (for tasks that lack them).

    Yields the set of row names added (filled as evaluations finish), so callers can keep them out of the task's
    own report. Nothing changes for tasks whose evaluator already splits by condition, or when not ``enabled``.
    """
    added: set[str] = set()
    spec = TASK_METRICS.get(task)
    if not enabled or (spec is not None and spec.rows_by_condition):
        yield added
        return
    make = module.make_evaluator
    # an instance attribute shadows the method for the evaluation loop (IVTaskModule._start_eval) and is removed
    # afterwards; the module class and its other instances are untouched
    module.make_evaluator = lambda stage: ConditionRows(lambda: make(stage), added)
    try:
        yield added
    finally:
        del module.make_evaluator


# ------------------------------------------------------------------------------------------------- the report


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return None if math.isnan(v) else v


def drops(clean: float | None, value: float | None, higher_is_better: bool) -> tuple[float | None, float | None]:
    """``(absolute drop, relative drop in percent of the clean value)``; positive means worse than clean."""
    if clean is None or value is None:
        return None, None
    d = clean - value if higher_is_better else value - clean
    return d, (100.0 * d / abs(clean) if clean else None)


def _scalars(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Each row's numeric entries only (curves and per-class tables stay in the task's own report)."""
    return {row: {k: v for k, v in res.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for row, res in results.items()}


@dataclass
class RobustnessReport:
    """One run's scores clean and under each degradation.

    Attributes:
        task: the task name.
        split: the evaluated split.
        seed: the evaluation seed of the random degradations.
        metrics: the headline metrics.
        clean: results rows of the clean evaluation (``{row: {metric: value}}``).
        degraded: degradation name -> results rows, in evaluation order.
        rows: the reported rows (``all``, conditions ...), in order.
    """

    task: str
    split: str
    seed: int
    metrics: tuple[Metric, ...]
    clean: dict[str, dict]
    degraded: dict[str, dict[str, dict]]
    rows: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rows:
            self.rows = list(self.clean)

    @property
    def conditions(self) -> list[str]:
        """Every evaluated condition: ``clean`` then the degradation names."""
        return [CLEAN, *self.degraded]

    def value(self, condition: str, row: str, metric: Metric) -> float | None:
        res = self.clean if condition == CLEAN else self.degraded[condition]
        return _number(res.get(row, {}).get(metric.key))

    def table(self) -> list[dict[str, Any]]:
        """One entry per (condition, row, metric): value, clean value, absolute and relative drop."""
        out = []
        for cond in self.conditions:
            for row in self.rows:
                for m in self.metrics:
                    clean, value = self.value(CLEAN, row, m), self.value(cond, row, m)
                    d, rel = drops(clean, value, m.higher_is_better)
                    out.append({"degradation": cond, "row": row, "metric": m.key, "value": value, "clean": clean,
                                "drop": d, "rel_drop": rel})
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the settings, the table, and every numeric result of every degradation."""
        return {
            "task": self.task, "split": self.split, "seed": self.seed, "rows": self.rows,
            "metrics": [{"key": m.key, "label": m.label, "higher_is_better": m.higher_is_better}
                        for m in self.metrics],
            "degradations": list(self.degraded),
            "rationale": {name: SUITE_RATIONALE[name] for name in self.degraded if name in SUITE_RATIONALE},
            "drop": "clean - value for higher-is-better metrics, value - clean otherwise: positive = worse than clean; "
                    "rel_drop in percent of the clean value",
            "table": self.table(),
            "results": {CLEAN: _scalars(self.clean)} | {k: _scalars(v) for k, v in self.degraded.items()},
        }

    def markdown(self) -> str:
        """A ``## Robustness`` section: one table per metric, a value / drop / relative-drop column triple per row."""
        lines = ["## Robustness", "",
                 f"Split {self.split!r}, evaluation seed {self.seed}. Degradations are applied after loading and "
                 "before normalisation (docs/METHOD.md section 14). Drop: how much worse than clean (positive = "
                 "worse), absolute and in percent of the clean value.", ""]
        for m in self.metrics:
            head = ["degradation"] + [c for row in self.rows for c in (f"{m.label} {row}", "drop", "drop %")]
            lines += [f"### {m.label} ({'higher' if m.higher_is_better else 'lower'} is better)", "",
                      "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
            for cond in self.conditions:
                cells = [f"`{cond}`" if cond != CLEAN else CLEAN]
                for row in self.rows:
                    clean, value = self.value(CLEAN, row, m), self.value(cond, row, m)
                    d, rel = drops(clean, value, m.higher_is_better)
                    cells += [_fmt(value), "" if cond == CLEAN else _fmt(d, signed=True),
                              "" if cond == CLEAN else _fmt(rel, signed=True)]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"![robustness]({REPORT_PNG})", ""]
        return "\n".join(lines)

    def format(self) -> str:
        """Terminal lines: per degradation, each row's first metric with its drop."""
        m = self.metrics[0]
        width = max(len(c) for c in self.conditions)
        out = [f"robustness ({m.label}, drop = worse than clean):"]
        for cond in self.conditions:
            parts = []
            for row in self.rows:
                clean, value = self.value(CLEAN, row, m), self.value(cond, row, m)
                d, rel = drops(clean, value, m.higher_is_better)
                parts.append(f"{row} {_fmt(value)}" + ("" if cond == CLEAN else f" ({_fmt(d, signed=True)})"))
            out.append(f"  {cond:<{width}}  " + "  ".join(parts))
        return "\n".join(out)

    def plot(self, out_png: str | Path) -> Path:
        """Grouped horizontal bars: each condition's value per row, one panel per metric, clean at the top."""
        import numpy as np

        from ..viz import _new_figure, _save

        conds, rows = self.conditions, self.rows
        fig = _new_figure((4.5 * len(self.metrics) + 1.5, 0.32 * len(conds) * max(1, len(rows)) / 1.5 + 1.5))
        axes = fig.subplots(1, len(self.metrics), squeeze=False)[0]
        y = np.arange(len(conds))[::-1]  # clean on top
        height = 0.8 / max(1, len(rows))
        for ax, m in zip(axes, self.metrics, strict=True):
            for j, row in enumerate(rows):
                vals = [self.value(c, row, m) for c in conds]
                ax.barh(y + 0.4 - height * (j + 0.5), [np.nan if v is None else v for v in vals], height,
                        label=row)
            ax.set_yticks(y, conds, fontsize=8)
            ax.set_xlabel(f"{m.label} ({'higher' if m.higher_is_better else 'lower'} is better)")
            ax.grid(True, axis="x", alpha=0.3)
        axes[0].legend(fontsize=8, loc="lower right")
        fig.suptitle(f"{self.task}: robustness on {self.split!r} (seed {self.seed})")
        return _save(fig, out_png)


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def write_robustness(report: RobustnessReport, out_dir: str | Path) -> list[Path]:
    """Add the report to the task's ``metrics.json`` (key ``robustness``) and ``metrics.md``; write the chart.

    Call it after the task's ``write_report`` (both files are created if the task wrote none).
    """
    json_path, md_path = extend_report(out_dir, "robustness", report.to_dict(), report.markdown())
    return [json_path, md_path, report.plot(Path(out_dir) / REPORT_PNG)]
