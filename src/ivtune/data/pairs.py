"""The paired dataset every task builds on, the sample contract and the batch collate.

A dataset item is a dict::

    {"vis": FloatTensor (3, H, W), "ir": FloatTensor (1 or 3, H, W), <the task's target>,
     "meta": {"name": str, "vis_path": str, "ir_path": str, "condition": "day" | "night" | "fog" | None,
              "orig_size": (H, W), ...the task's entries}}

:class:`PairedDataset` holds the records (a VIS file, an IR file and, optionally, a target file), reads and checks
the pair, and asks three hooks for the target: ``read_target`` (the mask, saliency map or boxes of a record),
``target_problems`` (what is wrong with it, for :meth:`load_raw` and the scan) and ``add_target`` (how it enters
the sample). Segmentation, SOD and detection datasets each implement these in their slice. Files are checked
where they are read: a VIS/IR size mismatch or a bad target raises :class:`ivtune.errors.DataError` naming the
files; :func:`ivtune.data.scan.scan_pairs` runs the same checks over every record and collects the problems.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from .io import read_gray, read_rgb
from .scan import AddProblem, ScanReport, pair_size_problem, scan_pairs
from .transforms import to_tensors

CONDITIONS = ("day", "night", "fog")
# MFNet / MSRS names end in D (day) or N (night); the synthetic writer adds F (fog).
CONDITION_SUFFIXES = {"D": "day", "N": "night", "F": "fog"}

# Distinct colours for datasets without a published palette; cycled when there are more classes.
_DEFAULT_COLOURS = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40),
    (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class PairRecord:
    """One VIS/IR pair on disk. Paths may point at missing files when a dataset is built with ``strict=False``."""

    name: str
    vis_path: str
    ir_path: str
    label_path: str | None = None  # the target file (a label, a saliency map), when the task has one per pair
    condition: str | None = None


def condition_from_name(name: str, suffixes: dict[str, str] | None = None) -> str | None:
    """``"day"``/``"night"``/``"fog"`` from the last letter of a sample name (``00123D``), else None."""
    suffixes = CONDITION_SUFFIXES if suffixes is None else suffixes
    return suffixes.get(name[-1:].upper()) if name else None


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """A fixed list of distinct RGB colours, class 0 black."""
    return [_DEFAULT_COLOURS[i % len(_DEFAULT_COLOURS)] for i in range(num_classes)]


class PairedDataset(Dataset):
    """VIS/IR file pairs with a task target, giving samples in the contract of this module.

    Subclasses implement the target hooks (``read_target``, ``target_problems``, ``add_target``, and for the scan
    ``scan_target`` / ``scan_summary``) and may change how images are read (``read_vis`` / ``read_ir`` /
    ``read_images``, e.g. packed RGB+T files or generated scenes); ``load_raw`` and ``__getitem__`` stay here.

    Args:
        records: the pairs, in order (:class:`PairRecord` or a task record with ``name``, ``vis_path``,
            ``ir_path``, ``condition``).
        transform: called with the raw sample (numpy arrays) and returning the tensor sample; None gives
            :meth:`default_transform` (values scaled to [0, 1], no normalisation).
        strict: raise a :class:`DataError` listing every missing file; ``False`` keeps incomplete records so that
            :meth:`scan` can report them (reading such a record still raises).
        name: dataset name used in messages.
        ir_high_depth: scaling of >8-bit thermal files, see :func:`ivtune.data.io.read_gray`.
    """

    target_role = "label"  # what the target file is called in messages

    def __init__(self, records: Sequence[Any], transform: Transform | None = None, strict: bool = True,
                 name: str = "paired", ir_high_depth: str = "minmax") -> None:
        self.records = list(records)
        self.transform = transform
        self.strict = strict
        self.name = name
        self.ir_high_depth = ir_high_depth
        # (path, why) of input files or entries no record uses: the scan reports each (see ScanReport.repairs)
        self.unused_inputs: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ target hooks
    def target_path(self, index: int) -> str | None:
        """The file the target of record ``index`` is read from (None: no file of its own)."""
        return getattr(self.records[index], "label_path", None)

    def read_target(self, index: int) -> Any:
        """The target of record ``index`` (None for an unlabelled record): its file through
        :meth:`read_target_file`; datasets whose targets are not files of their own override this."""
        path = self.target_path(index)
        return None if path is None else self.read_target_file(path)

    def read_target_file(self, path: str) -> Any:
        """A target file as the task reads it (a label map, a binary saliency map ...)."""
        raise NotImplementedError(f"{type(self).__name__} reads no target files")

    def target_problems(self, index: int, vis_shape: tuple[int, ...], target: Any) -> list[tuple[str, str, str]]:
        """``(kind, path, detail)`` of what is wrong with ``target`` for an image of ``vis_shape``."""
        return []

    def add_target(self, sample: dict[str, Any], index: int, target: Any) -> None:
        """Put ``target`` (after :meth:`target_problems` found nothing) into the raw ``sample``."""

    def default_transform(self, sample: dict[str, Any]) -> dict[str, Any]:
        return to_tensors(sample)

    def scan_target(self, index: int, vis: np.ndarray | None, add: AddProblem) -> None:
        """Read and check the target of record ``index`` for the scan, reporting through ``add``."""
        path = self.target_path(index)
        try:
            target = self.read_target(index)
        except DataError as exc:
            add("unreadable", path or self.records[index].name, str(exc))
            return
        if target is not None and vis is not None:
            problems = self.target_problems(index, vis.shape, target)
            for kind, where, detail in problems:
                add(kind, where, detail)
            if not problems:
                self.count_target(index, target, vis.shape)

    def target_folder(self) -> str:
        """Where the targets are (the folder of the first target file), for messages about all of them."""
        paths = [p for i in range(len(self.records)) if (p := self.target_path(i))]
        return os.path.dirname(paths[0]) if paths else self.name

    def count_target(self, index: int, target: Any, vis_shape: tuple[int, ...]) -> None:
        """Tally a good target of an image of ``vis_shape`` during a scan (into :attr:`scan_counts` and
        :attr:`scan_files`) for :meth:`scan_summary`."""

    def scan_summary(self, report: ScanReport) -> None:
        """Add the task's counts to a finished scan report."""

    # ------------------------------------------------------------------ files
    def files(self, index: int) -> list[tuple[str, str]]:
        """``(role, path)`` of every file record ``index`` needs."""
        rec = self.records[index]
        out = [("vis", rec.vis_path)]
        if rec.ir_path != rec.vis_path:  # packed RGB+T files hold both images
            out.append(("ir", rec.ir_path))
        if (target := self.target_path(index)) is not None:
            out.append((self.target_role, target))
        return out

    def missing_files(self, index: int) -> list[tuple[str, str]]:
        """``(role, path)`` of the files of record ``index`` that do not exist."""
        return [(role, p) for role, p in self.files(index) if not os.path.isfile(p)]

    def _raise_on_missing(self) -> None:
        lines = []
        for i, rec in enumerate(self.records):
            for role, path in self.missing_files(i):
                lines.append(f"  missing {role} {path} (pair {rec.name!r}, vis {rec.vis_path})")
        if lines:
            raise DataError(
                f"{self.name}: {len(lines)} file(s) missing for {len(self.records)} pair(s):\n" + "\n".join(lines)
                + "\nRestore the files, or build with strict=False and call .scan() for a full report."
            )

    # ------------------------------------------------------------------ reading
    def read_vis(self, index: int) -> np.ndarray:
        """The visible image of record ``index``, ``(H, W, 3)`` uint8."""
        return read_rgb(self.records[index].vis_path)

    def read_ir(self, index: int) -> np.ndarray:
        """The thermal image of record ``index``, ``(H, W)`` uint8."""
        return read_gray(self.records[index].ir_path, self.ir_high_depth)

    def read_images(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(vis, ir)`` of record ``index``; subclasses with packed files read them once here."""
        return self.read_vis(index), self.read_ir(index)

    def __len__(self) -> int:
        return len(self.records)

    def record_meta(self, index: int) -> dict[str, Any]:
        """``meta`` entries of record ``index`` besides name, paths, condition and size."""
        return {}

    def load_raw(self, index: int) -> dict[str, Any]:
        """Read and check record ``index``; the untransformed sample with numpy arrays."""
        rec = self.records[index]
        vis, ir = self.read_images(index)
        problem = pair_size_problem(rec, vis.shape, ir.shape)
        if problem is not None:
            raise DataError(problem)
        target = self.read_target(index)
        if target is not None:
            problems = self.target_problems(index, vis.shape, target)
            if problems:
                raise DataError(problems[0][2])
        sample: dict[str, Any] = {"vis": vis, "ir": ir}
        self.add_target(sample, index, target)
        sample["meta"] = {"name": rec.name, "vis_path": rec.vis_path, "ir_path": rec.ir_path,
                          "condition": rec.condition, "orig_size": (int(vis.shape[0]), int(vis.shape[1])),
                          **self.record_meta(index)}
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.load_raw(index)
        transform = self.transform if self.transform is not None else self.default_transform
        out = transform(sample)
        if not isinstance(out.get("vis"), torch.Tensor) or not isinstance(out.get("ir"), torch.Tensor):
            raise ConfigError(
                f"{self.name}: transform {transform!r} must return a dict with tensors 'vis' and 'ir', got "
                f"{type(out.get('vis')).__name__} / {type(out.get('ir')).__name__}. End the pipeline with a tensor "
                "conversion (the task's build_*_transforms do)."
            )
        return out

    def start_scan(self) -> None:
        """Reset what :meth:`count_target` tallies (:func:`ivtune.data.scan.scan_pairs` calls it first)."""
        self.scan_counts: Counter = Counter()
        self.scan_files: list[tuple[str, str]] = []

    def scan(self) -> ScanReport:
        """Check every record without stopping at the first problem; see :func:`ivtune.data.scan.scan_pairs`."""
        return scan_pairs(self)

    @property
    def conditions(self) -> list[str | None]:
        """The condition of every record, in order."""
        return [r.condition for r in self.records]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, pairs={len(self)})"


_STACKED_KEYS = ("vis", "ir", "mask")


def collate_pairs(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples: tensors of equal shape are stacked, ``meta`` becomes a list of dicts, other values lists.

    Args:
        batch: samples in the contract of this module, all with the same keys.

    Returns:
        ``{"vis": (B, 3, H, W), "ir": (B, C, H, W), "mask": (B, H, W) (if present), "meta": [dict, ...]}``.

    Raises:
        DataError: the batch is empty, samples have different keys, or ``vis``/``ir``/``mask`` differ in shape.
    """
    if len(batch) == 0:
        raise DataError("collate_pairs got an empty batch.")
    names = [s.get("meta", {}).get("name", f"#{i}") for i, s in enumerate(batch)]
    keys = list(batch[0].keys())
    for s, n in zip(batch, names, strict=True):
        if set(s.keys()) != set(keys):
            raise DataError(
                f"Cannot batch samples with different keys: {names[0]!r} has {sorted(keys)} but {n!r} has "
                f"{sorted(s.keys())}. Mix labelled and unlabelled samples in separate loaders."
            )
    out: dict[str, Any] = {}
    for key in keys:
        if key == "meta":
            continue
        values = [s[key] for s in batch]
        if all(isinstance(v, torch.Tensor) for v in values):
            shapes = [tuple(v.shape) for v in values]
            if len(set(shapes)) == 1:
                out[key] = torch.stack(values)
                continue
            if key in _STACKED_KEYS:
                detail = ", ".join(f"{n} {sh}" for n, sh in zip(names, shapes, strict=True))
                raise DataError(
                    f"Cannot batch {key!r} tensors of different shapes: {detail}. Use a fixed crop/resize size in "
                    "the transform, or batch size 1 for native-size evaluation."
                )
        elif key in _STACKED_KEYS:
            raise DataError(f"Sample key {key!r} must be a tensor to batch, got {type(values[0]).__name__}.")
        out[key] = values
    out["meta"] = [s.get("meta", {}) for s in batch]
    return out
