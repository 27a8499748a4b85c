"""The dataset scan report and the pair checks every task shares (the engine of ``ivtune data check``).

:func:`scan_pairs` reads every record of a :class:`ivtune.data.pairs.PairedDataset`, collects every problem and
keeps going: missing partners, unreadable files, VIS/IR size mismatches, then whatever the dataset's target hook
(``scan_target``) finds in its masks, saliency maps or boxes. Tasks add their own counts (boxes per class, clipped
boxes ...) as lines of :attr:`ScanReport.counts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError

# Problem kinds, in report order; a task may add its own after these.
PROBLEM_KINDS = ("missing", "unreadable", "size_mismatch", "label_size_mismatch", "gt_size_mismatch", "label_values",
                 "annotation", "no_targets")
AddProblem = Callable[[str, str, str], None]


SizedFile = tuple[str, Any, tuple[int, ...]]  # (role named in the message, path, array shape)


def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    return int(shape[0]), int(shape[1])


def size_problem(kind: str, rec: Any, first: SizedFile, second: SizedFile, fix: str) -> str | None:
    """The message for two files of record ``rec`` (with a ``name``) whose (H, W) differ, or None when they match.

    ``"{kind} in pair 'name': {role} {path} is (h, w) (H, W) but {role} {path} is (h, w). {fix}"``: one wording for
    every size check (VIS/IR here, a task's target against its image in the task's dataset).
    """
    (role1, path1, shape1), (role2, path2, shape2) = first, second
    if _hw(shape1) == _hw(shape2):
        return None
    return (f"{kind} in pair {rec.name!r}: {role1} {path1} is {_hw(shape1)} (H, W) but {role2} {path2} is "
            f"{_hw(shape2)}. {fix}")


def pair_size_problem(rec: Any, vis_shape: tuple[int, ...], ir_shape: tuple[int, ...]) -> str | None:
    """The VIS/IR size-mismatch message for ``rec`` (a record with ``name``, ``vis_path``, ``ir_path``), or None."""
    return size_problem("VIS/IR size mismatch", rec, ("vis", rec.vis_path, vis_shape), ("ir", rec.ir_path, ir_shape),
                        "The pair must be pixel-aligned: register and resize the IR image to the visible one.")


@dataclass
class ScanReport:
    """The result of :func:`scan_pairs`.

    Attributes:
        dataset: dataset name.
        num_pairs: records scanned.
        num_ok: records with no problem.
        conditions: record count per condition (``"unknown"`` when the name carries none).
        problems: ``(kind, path, detail)``; ``path`` is the file at fault.
        counts: task lines shown before the problems (e.g. boxes per class, clipped boxes), in order.
        details: ``(path, detail)`` lines shown under the counts (e.g. the files whose boxes were clipped).
        values: the task's counts as numbers, for callers (e.g. ``{"clipped_boxes": 3}``).
        repairs: counted repairs and inputs left out, one line each with the path (files no pair uses, annotations
            of unknown images, resized ground truth ...); not problems, but ``train`` shows them as ``data check``
            does.
    """

    dataset: str
    num_pairs: int = 0
    num_ok: int = 0
    conditions: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    details: list[tuple[str, str]] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no record has a problem (counted repairs are not problems)."""
        return not self.problems

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:  # report.clipped_boxes, report.boxes_per_class ...
            return values[name]
        raise AttributeError(name)

    def add_no_targets(self, found: bool, folder: str, detail: str) -> None:
        """A ``no_targets`` problem at ``folder`` unless targets were ``found`` (a labelled pixel, a salient pixel,
        a box ...): nothing can be learnt or scored. Only with good records: the others are reported already."""
        if self.num_ok and not found:
            self.problems.append(("no_targets", folder, detail))

    def by_kind(self) -> dict[str, list[tuple[str, str]]]:
        """``kind -> [(path, detail), ...]`` for every kind that occurred."""
        out: dict[str, list[tuple[str, str]]] = {}
        for kind, path, detail in self.problems:
            out.setdefault(kind, []).append((path, detail))
        return out

    def summary_lines(self, shown: int = 20) -> list[str]:
        """The counts, their file details and the counted repairs (what ``train`` shows before it starts)."""
        lines = list(self.counts)
        lines += [f"    {path}: {detail}" for path, detail in self.details[:shown]]
        if len(self.details) > shown:
            lines.append(f"    ... and {len(self.details) - shown} more file(s)")
        if self.repairs:
            lines.append(f"Repaired or left out (counted), {len(self.repairs)}:")
            lines += [f"  {line}" for line in self.repairs[:shown]]
            if len(self.repairs) > shown:
                lines.append(f"  ... and {len(self.repairs) - shown} more")
        return lines

    def format(self, shown: int = 20) -> str:
        """A readable multi-line report."""
        conds = ", ".join(f"{k} {v}" for k, v in sorted(self.conditions.items())) or "none"
        lines = [f"Dataset {self.dataset}: {self.num_pairs} pairs, {self.num_ok} ok ({conds})."]
        lines += self.summary_lines(shown)
        lines.append("OK: no problems found." if self.ok else f"{len(self.problems)} problem(s):")
        groups = self.by_kind()
        order = {k: i for i, k in enumerate(PROBLEM_KINDS)}
        for kind in sorted(groups, key=lambda k: order.get(k, len(order))):
            lines.append(f"  {kind} ({len(groups[kind])}):")
            lines.extend(f"    {path}: {detail}" for path, detail in groups[kind])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def scan_pairs(dataset: Any) -> ScanReport:
    """Check every record of ``dataset`` without stopping at the first problem.

    Build the dataset with ``strict=False`` so that records with missing files are kept and reported here.

    Args:
        dataset: a :class:`ivtune.data.pairs.PairedDataset` (``records``, ``missing_files``, ``read_vis``,
            ``read_ir``, ``target_path``, ``scan_target``, ``scan_summary``).

    Returns:
        A :class:`ScanReport`; ``report.ok`` is False if anything was found.
    """
    report = ScanReport(dataset=getattr(dataset, "name", type(dataset).__name__), num_pairs=len(dataset))
    if (start := getattr(dataset, "start_scan", None)) is not None:
        start()
    report.conditions = dict(Counter(c or "unknown" for c in dataset.conditions))
    seen: set[tuple[str, str]] = set()  # packed files back both vis and ir: report a bad file once

    def add(kind: str, path: str, detail: str) -> None:
        if (kind, path) not in seen:
            seen.add((kind, path))
            report.problems.append((kind, path, detail))

    for i, rec in enumerate(dataset.records):
        before = len(report.problems)
        missing = dict(dataset.missing_files(i))
        for role, path in missing.items():
            partner = rec.ir_path if role == "vis" else rec.vis_path
            add("missing", path, f"{role} file of pair {rec.name!r} not found (partner {partner})")
        arrays: dict[str, Any] = {}
        for role, reader, path in (("vis", dataset.read_vis, rec.vis_path), ("ir", dataset.read_ir, rec.ir_path)):
            if path in missing.values():
                continue
            try:
                arrays[role] = reader(i)
            except DataError as exc:
                add("unreadable", path, str(exc))
        vis, ir = arrays.get("vis"), arrays.get("ir")
        if vis is not None and ir is not None and (problem := pair_size_problem(rec, vis.shape, ir.shape)):
            add("size_mismatch", rec.ir_path, problem)
        target_path = dataset.target_path(i)
        if target_path is None or target_path not in missing.values():
            dataset.scan_target(i, vis, add)
        if len(report.problems) == before:
            report.num_ok += 1
    dataset.scan_summary(report)
    report.repairs += [f"{path}: {why}" for path, why in getattr(dataset, "unused_inputs", ())]
    return report
