"""The shared part of every task's ``data:`` section, and how a task's section and its datasets' options join it.

A task (``ivtune.tasks.<name>``) defines its section as a subclass of :class:`DataConfig` with the keys its
transforms read (segmentation: ``crop_size``, ``scale_range``; detection: ``train_sizes`` ...) and registers it
with its datasets (:func:`register_data_section`). The options of each dataset (the keyword-only arguments of its
builder, e.g. MFNet's ``layout``, a COCO ``ann_file``) become typed keys of the same section when ``data.dataset``
names it, so every key of every task and dataset is checked the same way: an unknown or misspelt key is an error
naming the file, the line and the likely key, and ``dataset_options()`` hands the builder exactly its options.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from .engine import FieldError, Section

IR_NORMS = ("imagenet", "unit", "meanstd")


@dataclass(kw_only=True)
class DataConfig(Section):
    """Keys every task's ``data:`` section has.

    Attributes:
        dataset: a dataset of the task (``ivtune datasets`` lists them).
        root: dataset directory (relative paths are taken from the working directory); null only for generated data.
        train_split: split trained on (MFNet: ``train``, or ``trainval`` as Sigma/CMX do).
        val_split: split validated on during training; null for none.
        test_split: split of the final evaluation; null for none.
        hflip: probability of a horizontal flip (same for both modalities).
        photometric: photometric distortion of the visible image (never the IR image).
        ir_norm: IR normalisation: ``imagenet`` (mean/std of the repeated IR), ``unit`` ([0, 1]) or ``meanstd``.
        ir_mean: IR mean for ``meanstd``, on the [0, 1] scale.
        ir_std: IR std for ``meanstd``, on the [0, 1] scale.
        ir_channels: channels the IR image is given to the model with (1, or 3 repeated).
        batch_size: training batch size per device.
        eval_batch_size: validation / test batch size per device.
        num_workers: data loader worker processes per device.
    """

    _section: ClassVar[str] = "data"
    _dataset_options: ClassVar[tuple[str, ...]] = ()  # the keys that go to the dataset builder
    _needs_root: ClassVar[bool] = True

    dataset: str
    root: str | None = None
    train_split: str
    val_split: str | None = None
    test_split: str | None = None
    hflip: float = 0.5
    photometric: bool = True
    ir_norm: str = "imagenet"
    ir_mean: float | None = None
    ir_std: float | None = None
    ir_channels: int = 3
    batch_size: int
    eval_batch_size: int = 1
    num_workers: int = 2

    @classmethod
    def _choose(cls, raw_parent: Mapping[str, Any]) -> type:
        """The section class for the file's ``task`` and ``data.dataset`` (the schema engine calls this)."""
        task = raw_parent.get("task")
        if not _SECTIONS:
            raise FieldError("task", "no task registered",
                             "import ivtune.tasks (or use ivtune.load_config, which does) before loading a config")
        if not isinstance(task, str):
            return DataConfig  # the task key reports its own error (missing, or not text)
        if task not in _SECTIONS:
            close = difflib.get_close_matches(task, list(_SECTIONS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FieldError("task", "bad value", f"expected one of {', '.join(_SECTIONS)}, got {task!r}{hint}")
        raw = raw_parent.get("data")
        name = raw.get("dataset") if isinstance(raw, Mapping) else None
        if not isinstance(name, str):
            return _SECTIONS[task].section  # 'data.dataset' is reported as missing or of the wrong type
        return _SECTIONS[task].for_dataset(name)

    @classmethod
    def _key_hint(cls, name: str) -> str | None:
        """Why ``name`` is not a key here when it is an option of another dataset of the task (engine hook)."""
        for sections in _SECTIONS.values():
            if issubclass(cls, sections.section):
                owners = [d for d, e in sections.datasets.items() if d != getattr(cls, "_dataset", None)
                          and name in {o for o, _, _ in builder_options(e.build, getattr(e, "excluded_options", ()))}]
                if owners:
                    return (f"; it is an option of the {', '.join(owners)} dataset(s), not of "
                            f"{getattr(cls, '_dataset', 'this one')}: remove it, or set data.dataset to one of them")
        return None

    def normalization(self) -> dict[str, Any]:
        """The keyword arguments of :func:`ivtune.data.transforms.build_normalize` this section sets."""
        return {"ir_norm": self.ir_norm, "ir_mean": self.ir_mean, "ir_std": self.ir_std,
                "ir_channels": self.ir_channels}

    def dataset_options(self) -> dict[str, Any]:
        """The keys of this section that are options of the chosen dataset's builder."""
        return {name: getattr(self, name) for name in self._dataset_options}

    def _check(self) -> None:
        self._nonempty("dataset")
        self._nonempty("root", optional=True)
        if self.root is None and self._needs_root:
            self._bad("root", f"the {self.dataset} dataset needs its directory: set data.root, or pass "
                              "--set data.root=PATH")
        self._nonempty("train_split")
        self._nonempty("val_split", optional=True)
        self._nonempty("test_split", optional=True)
        if not 0.0 <= self.hflip <= 1.0:
            self._bad("hflip", f"is a probability in [0, 1], got {self.hflip}")
        self._one_of("ir_norm", IR_NORMS)
        if self.ir_norm == "meanstd":
            for name in ("ir_mean", "ir_std"):
                if getattr(self, name) is None:
                    self._bad(name, "is required with ir_norm: meanstd (a float on the [0, 1] scale)")
            self._positive("ir_std")
        elif self.ir_mean is not None or self.ir_std is not None:
            warnings.warn(f"data.ir_mean / data.ir_std are set but ignored with ir_norm: {self.ir_norm}; they apply "
                          "only to ir_norm: meanstd.", UserWarning, stacklevel=5)
        if self.ir_channels not in (1, 3):
            self._bad("ir_channels", f"expected 1 or 3 (the thermal image repeated), got {self.ir_channels}")
        self._at_least("batch_size", 1)
        self._at_least("eval_batch_size", 1)
        self._at_least("num_workers", 0)


# ------------------------------------------------------------------------------------------ dataset options
def _config_type(tp: Any) -> Any:
    """A builder's annotation as the schema engine checks it: sequences are lists, mappings dicts, paths text."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, __import__("types").UnionType):
        return Union[tuple(_config_type(a) for a in args)]  # noqa: UP007 (a runtime-built union)
    if tp is Path:
        return str
    if origin in (Sequence, list, typing.Sequence) or tp in (Sequence, list):
        return list[_config_type(args[0])] if args else list[Any]
    if origin in (Mapping, dict, typing.Mapping) or tp in (Mapping, dict):
        return dict[str, Any]
    if origin is tuple and args and args[-1] is Ellipsis:
        return list[_config_type(args[0])]
    return tp


def _yaml_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_yaml_default(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def builder_options(build: Callable[..., Any], exclude: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
    """``(name, type, default)`` of the keyword-only arguments of a dataset builder (its options)."""
    hints = typing.get_type_hints(build)
    out = []
    for p in inspect.signature(build).parameters.values():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name in exclude:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"dataset option {p.name!r} of {build.__qualname__} needs a default")
        out.append((p.name, _config_type(hints.get(p.name, Any)), _yaml_default(p.default)))
    return out


@dataclass
class _TaskSections:
    task: str
    section: type
    datasets: Mapping[str, Any]  # name -> entry with .build, .needs_root and .excluded_options (optional)
    cache: dict[str, type] = field(default_factory=dict)

    def for_dataset(self, name: str) -> type:
        if name not in self.datasets:
            close = difflib.get_close_matches(name, list(self.datasets), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FieldError("data.dataset", "bad value", f"task {self.task!r} reads the datasets "
                             f"{', '.join(self.datasets)}, not {name!r}{hint}")
        if name not in self.cache:
            self.cache[name] = _with_options(self.section, name, self.datasets[name])
        return self.cache[name]


def _with_options(section: type, name: str, entry: Any) -> type:
    """``section`` plus the options of dataset ``name`` as typed keys."""
    options = builder_options(entry.build, getattr(entry, "excluded_options", ()))
    own = {f.name for f in dataclasses.fields(section)}
    clash = [o for o, _, _ in options if o in own]
    if clash:
        raise TypeError(f"dataset {name!r} has options {clash} that are already keys of {section.__name__}")
    fields = [(o, tp, field(default_factory=functools.partial(_copy_default, d))) for o, tp, d in options]
    cls = dataclasses.make_dataclass(
        f"{section.__name__}_{name}", fields, bases=(section,), kw_only=True,
        namespace={"_dataset_options": tuple(o for o, _, _ in options), "_dataset": name,
                   "_needs_root": bool(getattr(entry, "needs_root", True)),
                   "__doc__": f"{section.__doc__}\n\n    Options of the {name} dataset: "
                              f"{', '.join(o for o, _, _ in options) or 'none'}."},
    )
    cls.__module__ = section.__module__
    return cls


def _copy_default(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


_SECTIONS: dict[str, _TaskSections] = {}


def register_data_section(task: str, section: type, datasets: Mapping[str, Any]) -> None:
    """Make ``section`` (a :class:`DataConfig` subclass) the ``data:`` section of configs with ``task: <task>``.

    Args:
        task: the task name.
        section: the task's section class.
        datasets: dataset name -> registry entry with ``build`` (whose keyword-only arguments are the options),
            ``needs_root`` and optionally ``excluded_options`` (arguments the task sets itself, e.g. ``strict``).
    """
    if not (isinstance(section, type) and issubclass(section, DataConfig)):
        raise TypeError(f"the data section of task {task!r} must subclass DataConfig, got {section!r}")
    _SECTIONS[task] = _TaskSections(task, section, dict(datasets))


def registered_tasks() -> tuple[str, ...]:
    """The tasks whose data sections are registered, in registration order."""
    return tuple(_SECTIONS)


def task_datasets(task: str) -> tuple[str, ...]:
    """The dataset names of a registered task."""
    return tuple(_SECTIONS[task].datasets) if task in _SECTIONS else ()
