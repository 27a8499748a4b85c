"""Dataset scan: read every record, collect every problem, keep going (the engine of ``ivtune data check``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import DataError
from .pairs import label_size_problem, label_value_problem, pair_size_problem

if TYPE_CHECKING:
    from .pairs import PairedSegDataset

# Problem kinds, in report order.
PROBLEM_KINDS = ("missing", "unreadable", "size_mismatch", "label_size_mismatch", "label_values")


@dataclass
class ScanReport:
    """The result of :func:`scan_seg_dataset`.

    Attributes:
        dataset: dataset name.
        num_pairs: records scanned.
        num_ok: records with no problem.
        conditions: record count per condition (``"unknown"`` when the name carries none).
        problems: ``(kind, path, detail)``; kinds are ``PROBLEM_KINDS``, ``path`` the file at fault.
    """

    dataset: str
    num_pairs: int = 0
    num_ok: int = 0
    conditions: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no record has a problem."""
        return not self.problems

    def by_kind(self) -> dict[str, list[tuple[str, str]]]:
        """``kind -> [(path, detail), ...]`` for every kind that occurred."""
        out: dict[str, list[tuple[str, str]]] = {}
        for kind, path, detail in self.problems:
            out.setdefault(kind, []).append((path, detail))
        return out

    def format(self) -> str:
        """A readable multi-line report."""
        conds = ", ".join(f"{k} {v}" for k, v in sorted(self.conditions.items())) or "none"
        lines = [
            f"Dataset {self.dataset}: {self.num_pairs} pairs, {self.num_ok} ok ({conds}).",
            "OK: no problems found." if self.ok else f"{len(self.problems)} problem(s):",
        ]
        groups = self.by_kind()
        for kind in sorted(groups, key=lambda k: PROBLEM_KINDS.index(k) if k in PROBLEM_KINDS else len(PROBLEM_KINDS)):
            lines.append(f"  {kind} ({len(groups[kind])}):")
            lines.extend(f"    {path}: {detail}" for path, detail in groups[kind])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def scan_seg_dataset(dataset: PairedSegDataset) -> ScanReport:
    """Check every record of ``dataset``: missing partners, unreadable files, size mismatches, label values.

    Build the dataset with ``strict=False`` so that records with missing files are kept and reported here.

    Args:
        dataset: a :class:`ivtune.data.pairs.PairedSegDataset` (or subclass, e.g. packed MFNet or synthetic).

    Returns:
        A :class:`ScanReport`; ``report.ok`` is False if anything was found.
    """
    report = ScanReport(dataset=getattr(dataset, "name", type(dataset).__name__), num_pairs=len(dataset))
    report.conditions = dict(Counter(c or "unknown" for c in dataset.conditions))
    seen: set[tuple[str, str]] = set()  # packed files back both vis and ir: report a bad file once

    def add(kind: str, path: str, detail: str) -> None:
        if (kind, path) not in seen:
            seen.add((kind, path))
            report.problems.append((kind, path, detail))

    for i, rec in enumerate(dataset.records):
        before = len(report.problems)
        missing = dict((role, path) for role, path in dataset.missing_files(i))
        for role, path in missing.items():
            add("missing", path, f"{role} file of pair {rec.name!r} not found (vis {rec.vis_path})")
        arrays = {}
        readers = {"vis": (dataset.read_vis, rec.vis_path), "ir": (dataset.read_ir, rec.ir_path),
                   "label": (dataset.read_label, rec.label_path)}
        for role, (reader, path) in readers.items():
            if path is None or path in missing.values():
                continue
            try:
                arrays[role] = reader(i)
            except DataError as exc:
                add("unreadable", path, str(exc))
        vis, ir, mask = arrays.get("vis"), arrays.get("ir"), arrays.get("label")
        if vis is not None and ir is not None:
            problem = pair_size_problem(rec, vis.shape, ir.shape)
            if problem:
                add("size_mismatch", rec.ir_path, problem)
        if mask is not None:
            if vis is not None and (problem := label_size_problem(rec, vis.shape, mask.shape)):
                add("label_size_mismatch", rec.label_path, problem)
            if problem := label_value_problem(rec, mask, dataset.num_classes, dataset.ignore_index):
                add("label_values", rec.label_path, problem)
        if len(report.problems) == before:
            report.num_ok += 1
    return report
