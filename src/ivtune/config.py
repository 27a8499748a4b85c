"""Typed run configuration: dataclasses checked on construction, loaded from one flat YAML file plus ``--set``.

One YAML file per (task, dataset, backbone) under ``configs/`` sets every value of a run; ``--set a.b=c`` overrides
any key from the command line (the value is parsed as YAML). There is no inheritance between files: what a run used
is what its file says, and :func:`save_config` writes the resolved configuration next to the run.

Every error is a :class:`ivtune.errors.ConfigError` that names the key, where it came from (file and line, or the
``--set`` argument), what was expected and what was seen::

    unknown key 'optim.lrr' in configs/seg/x.yaml line 12; did you mean 'optim.lr'?
    wrong type for 'train.max_steps' in --set train.max_steps=ten: expected int, got 'ten' (str)

Typical use::

    cfg = load_config("configs/seg/mfnet_swin_l_segformer.yaml", ["train.max_steps=100", "data.root=/data/MFNet"])
    save_config(cfg, "runs/x/config.yaml")
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import types
import typing
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from .backbones.factory import ADAPTER_INITS
from .errors import ConfigError
from .methods import METHODS

__all__ = [
    "Config", "ModelConfig", "DataConfig", "OptimConfig", "TrainConfig",
    "load_config", "config_from_dict", "config_to_dict", "save_config",
    "TASKS", "DATASETS", "DATASETS_BY_TASK", "IR_NORMS", "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "ACCELERATORS",
]

# the datasets each task reads (``ivtune.tasks`` builds them); a task here without an engine is refused at run time
DATASETS_BY_TASK = {
    "seg": ("mfnet", "msrs", "pst900", "fmb", "folders", "synthetic"),
    "det": ("m3fd", "llvip", "flir_aligned", "kaist", "msrs_det", "folders", "synthetic"),
    "sod": ("vt5000", "vt1000", "vt821", "folders", "synthetic"),
}
TASKS = tuple(DATASETS_BY_TASK)
DATASETS = tuple(dict.fromkeys(d for names in DATASETS_BY_TASK.values() for d in names))
DATASETS_WITHOUT_ROOT = ("synthetic",)
IR_NORMS = ("imagenet", "unit", "meanstd")
OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("poly", "step", "constant")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# set by ivtune itself when it builds the timm model (factory.build_backbone); a timm kwarg would fight it
RESERVED_TIMM_KWARGS = {
    "pretrained": "use model.pretrained or model.weights",
    "features_only": "ivtune builds the plain timm model and taps features itself",
    "num_classes": "ivtune builds the backbone without a classifier (num_classes=0)",
}

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # PyYAML reads '6e-5' (no dot) as a string
_DEVICES_TEXT = re.compile(r"auto|-1|\d+|\d+(\s*,\s*\d+)*\s*,?")  # Lightning's string forms: "2", "0,1", "1,"


# ---------------------------------------------------------------------------------------------------------- errors
class _FieldError(ConfigError):
    """A field-level problem; the loader re-raises it with the key's origin (file and line, or ``--set``)."""

    def __init__(self, key: str, problem: str, detail: str) -> None:
        self.key, self.problem, self.detail = key, problem, detail
        super().__init__(f"{problem} for '{key}': {detail}")


class _Mismatch(Exception):
    """Internal: a value does not fit a type annotation."""


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------- type checking
def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "null"
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is tuple:
        return f"list of {len(args)} {_type_name(args[0])}"
    if tp is dict or origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return f"mapping (the '{tp._section}' section)"
    return tp.__name__


def _plain(value: Any) -> Any:
    """Free-form values as YAML would give them back: tuples become lists, so save/load round-trips compare equal."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` where lossless (int -> float, list -> tuple), else raise ``_Mismatch``."""
    if tp is Any:
        return value
    if _is_union(tp):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if isinstance(value, bool) and tp is not bool:  # bool is an int subclass; 'true' is never a number or a name
        raise _Mismatch
    if tp is bool or tp is int:
        if isinstance(value, tp):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int):  # 'precision: 32', 'run_name: 2024'
            return str(value)
        raise _Mismatch
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        return [_coerce(v, args[0]) for v in value]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
    if tp is dict or origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch
        return copy.deepcopy(_plain(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        raise _Mismatch
    raise TypeError(f"ivtune.config cannot check annotation {tp!r}")  # a bug in this module, not in a config


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _user_fields(cls: type) -> list[dataclasses.Field]:
    """The fields a YAML file may set (``Config.source`` is filled by the loader, not by the user)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _is_required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


# ----------------------------------------------------------------------------------------------- sections
class _Section:
    """Shared ``__post_init__``: coerce every field to its annotation, then run the section's value checks."""

    _section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                setattr(self, f.name, _coerce(value, hints[f.name]))
            except _Mismatch:
                raise _FieldError(
                    self._key(f.name), "wrong type",
                    f"expected {_type_name(hints[f.name])}, got {_show(value)} ({type(value).__name__})",
                ) from None
        self._check()

    def _check(self) -> None:
        """Value and cross-field checks; raise with :meth:`_bad`."""

    def _key(self, name: str) -> str:
        return f"{self._section}.{name}" if self._section else name

    def _bad(self, name: str, detail: str) -> typing.NoReturn:
        raise _FieldError(self._key(name), "bad value", detail)

    def _one_of(self, name: str, allowed: Iterable[str]) -> None:
        value, allowed = getattr(self, name), tuple(allowed)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self._bad(name, f"expected one of {', '.join(allowed)}, got {_show(value)}{hint}")

    def _at_least(self, name: str, low: float, *, optional: bool = False) -> None:
        value = getattr(self, name)
        if (value is not None or not optional) and value < low:
            self._bad(name, f"must be >= {low}, got {_show(value)}")

    def _positive(self, name: str, *, optional: bool = False) -> None:
        value = getattr(self, name)
        if (value is not None or not optional) and not value > 0:
            self._bad(name, f"must be > 0, got {_show(value)}")

    def _nonempty(self, name: str, *, optional: bool = False) -> None:
        value = getattr(self, name)
        if (value is not None or not optional) and not value.strip():
            self._bad(name, "must not be empty" + (" (write null to unset it)" if optional else ""))


@dataclass(kw_only=True)
class ModelConfig(_Section):
    """The two-input backbone and the task head.

    Attributes:
        backbone: timm model name, optionally with a pretrained tag (``swin_large_patch4_window12_384.ms_in22k``).
        method: training method, a key of ``ivtune.METHODS`` (``iv-tuning``: frozen backbone; ``full``).
        pretrained: load timm's pretrained weights for ``backbone`` from the hub (network or warm cache).
        weights: local ``.safetensors`` / ``.pth`` state dict (relative paths are taken from the working
            directory); wins over ``pretrained``.
        out_indices: Swin: stages to return; ViT/EVA: the four blocks tapped for the pyramid; null: the default.
        adapter_init: ``default`` (the authors' init) or ``zeros`` (last projections zeroed).
        adapter_dropout: dropout inside every Hybrid Adapter (0.1 in the authors' code).
        timm_kwargs: extra ``timm.create_model`` kwargs (``img_size``, ``drop_path_rate``, tiny ``depth`` ...).
        head: task head name (segmentation: ``segformer``).
        head_kwargs: kwargs of the head.
        grad_checkpointing: recompute backbone block activations in backward (saves memory, costs time).
    """

    _section: ClassVar[str] = "model"

    backbone: str
    method: str = "iv-tuning"
    pretrained: bool = False
    weights: str | None = None
    out_indices: list[int] | None = None
    adapter_init: str = "default"
    adapter_dropout: float = 0.1
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    head: str = "segformer"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    grad_checkpointing: bool = False

    def _check(self) -> None:
        self._nonempty("backbone")
        if any(c.isspace() for c in self.backbone):
            self._bad("backbone", f"a timm model name has no spaces, got {self.backbone!r}")
        self._one_of("method", sorted(METHODS))
        self._nonempty("weights", optional=True)
        if self.weights is not None and self.pretrained:
            warnings.warn(
                f"model.weights ({self.weights}) and model.pretrained are both set: the local file wins and "
                "pretrained is ignored. Set model.pretrained: false to silence this.", UserWarning, stacklevel=4)
        if self.out_indices is not None and not self.out_indices:
            self._bad("out_indices", "must list at least one index, or be null for the backbone's default")
        self._one_of("adapter_init", ADAPTER_INITS)
        if not 0.0 <= self.adapter_dropout < 1.0:
            self._bad("adapter_dropout", f"is a probability in [0, 1), got {self.adapter_dropout}")
        for key, why in RESERVED_TIMM_KWARGS.items():
            if key in self.timm_kwargs:
                self._bad("timm_kwargs", f"must not contain {key!r}: {why}. Remove model.timm_kwargs.{key}")
        self._nonempty("head")


@dataclass(kw_only=True)
class DataConfig(_Section):
    """Dataset, splits, augmentation and loading.

    Attributes:
        dataset: one of :data:`DATASETS`.
        root: dataset directory (relative paths are taken from the working directory); null only for ``synthetic``.
        train_split: split trained on (MFNet: ``train``, or ``trainval`` as Sigma/CMX do).
        val_split: split validated on during training; null for none.
        test_split: split of the final evaluation; null for none.
        options: dataset-specific options (layout, classes, num_samples, seed ...), passed to the dataset.
        crop_size: training crop ``[H, W]`` after the random resize; null keeps the resized image.
        scale_range: random resize factor range ``[low, high]``; ``[1, 1]`` disables it.
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

    dataset: str
    root: str | None = None
    train_split: str
    val_split: str | None = None
    test_split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    crop_size: list[int] | None = None
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    hflip: float = 0.5
    photometric: bool = True
    ir_norm: str = "imagenet"
    ir_mean: float | None = None
    ir_std: float | None = None
    ir_channels: int = 3
    batch_size: int
    eval_batch_size: int = 1
    num_workers: int = 2

    def _check(self) -> None:
        self._one_of("dataset", DATASETS)
        self._nonempty("root", optional=True)
        if self.root is None and self.dataset not in DATASETS_WITHOUT_ROOT:
            self._bad("root", f"the {self.dataset} dataset needs its directory: set data.root, or pass "
                              "--set data.root=PATH")
        self._nonempty("train_split")
        self._nonempty("val_split", optional=True)
        self._nonempty("test_split", optional=True)
        if self.crop_size is not None and (len(self.crop_size) != 2 or min(self.crop_size) <= 0):
            self._bad("crop_size", f"expected two positive ints [H, W] (or null), got {self.crop_size}")
        lo_hi = self.scale_range
        if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
            self._bad("scale_range", f"expected [low, high] with 0 < low <= high, got {lo_hi}")
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
                          "only to ir_norm: meanstd.", UserWarning, stacklevel=4)
        if self.ir_channels not in (1, 3):
            self._bad("ir_channels", f"expected 1 or 3 (the thermal image repeated), got {self.ir_channels}")
        self._at_least("batch_size", 1)
        self._at_least("eval_batch_size", 1)
        self._at_least("num_workers", 0)


@dataclass(kw_only=True)
class OptimConfig(_Section):
    """Optimiser and learning-rate schedule (defaults: SPEC.md section 9.2, the mmseg SegFormer recipe).

    Attributes:
        name: ``adamw`` or ``adam``.
        lr: base learning rate (backbone IV modules).
        betas: Adam betas.
        weight_decay: decoupled (AdamW) or L2 (Adam) weight decay.
        head_lr_mult: learning-rate multiplier of the task head.
        warmup_iters: linear warm-up steps; 0 for none.
        warmup_ratio: learning-rate factor at step 0 of the warm-up.
        schedule: after warm-up: ``poly`` (to 0 at ``train.max_steps``), ``step`` or ``constant``.
        poly_power: exponent of the poly decay.
        step_milestones: steps at which ``step`` multiplies the rate by ``step_gamma``.
        step_gamma: factor of the ``step`` schedule.
        grad_clip_norm: clip the global gradient norm to this; null for none.
        grad_clip_value: clamp every gradient element to +-this; null for none.
    """

    _section: ClassVar[str] = "optim"

    name: str = "adamw"
    lr: float = 6e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    head_lr_mult: float = 10.0
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6
    schedule: str = "poly"
    poly_power: float = 1.0
    step_milestones: list[int] = field(default_factory=list)
    step_gamma: float = 0.1
    grad_clip_norm: float | None = None
    grad_clip_value: float | None = None

    def _check(self) -> None:
        self._one_of("name", OPTIMIZERS)
        self._positive("lr")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            self._bad("betas", f"both must be in [0, 1), got {list(self.betas)}")
        self._at_least("weight_decay", 0.0)
        self._positive("head_lr_mult")
        self._at_least("warmup_iters", 0)
        if not 0.0 <= self.warmup_ratio <= 1.0:
            self._bad("warmup_ratio", f"is a factor in [0, 1], got {self.warmup_ratio}")
        self._one_of("schedule", SCHEDULES)
        self._positive("poly_power")
        if self.schedule == "step":
            ms = self.step_milestones
            if not ms or any(m <= 0 for m in ms) or ms != sorted(set(ms)):
                self._bad("step_milestones", f"schedule: step needs increasing positive steps, e.g. [60000, "
                                             f"80000], got {ms}")
        self._positive("step_gamma")
        self._positive("grad_clip_norm", optional=True)
        self._positive("grad_clip_value", optional=True)
        if self.grad_clip_norm is not None and self.grad_clip_value is not None:
            self._bad("grad_clip_value", "grad_clip_norm and grad_clip_value are both set; keep one, set the other "
                                         "to null")


@dataclass(kw_only=True)
class TrainConfig(_Section):
    """Loop length, logging, checkpoints and the Lightning Trainer's hardware settings.

    Attributes:
        max_steps: optimiser steps of the run (the poly schedule ends here).
        val_every: validate every this many steps.
        log_every: log training metrics every this many steps.
        checkpoint_every: save a checkpoint every this many steps.
        seed: global random seed.
        precision: ``32``, ``bf16-mixed`` or ``16-mixed``.
        devices: Lightning ``devices``: a count, ``-1`` (all), ``auto`` or a list such as ``"0,1"``.
        num_nodes: machines.
        accelerator: one of :data:`ACCELERATORS`.
        strategy: Lightning strategy: ``auto``, ``ddp``, ``ddp_find_unused_parameters_true`` ...
        output_dir: directory the run directories go under.
        run_name: the run directory's name; null lets the engine name it.
        deterministic: ask PyTorch for deterministic kernels.
        progress_bar: show Lightning's progress bar.
    """

    _section: ClassVar[str] = "train"

    max_steps: int
    val_every: int
    log_every: int = 50
    checkpoint_every: int
    seed: int = 0
    precision: str = "32"
    devices: int | str = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    strategy: str = "auto"
    output_dir: str = "runs"
    run_name: str | None = None
    deterministic: bool = False
    progress_bar: bool = True

    def _check(self) -> None:
        for name in ("max_steps", "val_every", "log_every", "checkpoint_every"):
            self._at_least(name, 1)
        self._at_least("seed", 0)
        self._one_of("precision", PRECISIONS)
        if isinstance(self.devices, int):
            if self.devices < 1 and self.devices != -1:
                self._bad("devices", f"expected a count >= 1, -1 (all) or 'auto', got {self.devices}")
        elif not _DEVICES_TEXT.fullmatch(self.devices.strip()):
            self._bad("devices", f"expected a count, -1, 'auto' or device ids such as '0,1', got {self.devices!r}")
        self._at_least("num_nodes", 1)
        self._one_of("accelerator", ACCELERATORS)
        self._nonempty("strategy")
        self._nonempty("output_dir")
        self._nonempty("run_name", optional=True)
        if self.run_name is not None and ("/" in self.run_name or "\\" in self.run_name):
            self._bad("run_name", f"is one directory name, without '/', got {self.run_name!r}; "
                                  "put parent directories in train.output_dir")


@dataclass(kw_only=True)
class Config(_Section):
    """A whole run: task, model, data, optimiser, loop.

    Attributes:
        task: one of :data:`TASKS`.
        model: :class:`ModelConfig`.
        data: :class:`DataConfig`.
        optim: :class:`OptimConfig`.
        train: :class:`TrainConfig`.
        source: where it was loaded from (a path, ``<dict>``); not a YAML key, not compared.
    """

    task: str
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig
    source: str | None = field(default=None, compare=False, metadata={"internal": True})

    def _check(self) -> None:
        self._one_of("task", TASKS)
        if self.data.dataset not in DATASETS_BY_TASK[self.task]:
            self._bad("task", f"{self.task!r} cannot read dataset {self.data.dataset!r}; its datasets are "
                              f"{', '.join(DATASETS_BY_TASK[self.task])}")
        if self.optim.schedule != "constant" and self.optim.warmup_iters >= self.train.max_steps:
            warnings.warn(
                f"optim.warmup_iters ({self.optim.warmup_iters}) >= train.max_steps ({self.train.max_steps}): the "
                "run never leaves warm-up. Lower it, e.g. --set optim.warmup_iters=0.", UserWarning, stacklevel=4)


# -------------------------------------------------------------------------------------------------- loading
@dataclass
class _Origin:
    """Where each key came from, for error messages."""

    source: str
    lines: dict[str, int] = field(default_factory=dict)  # dotted key -> line in the file
    overrides: dict[str, str] = field(default_factory=dict)  # dotted key -> the --set argument that set it

    def where(self, key: str) -> str:
        for k, text in reversed(list(self.overrides.items())):  # the last --set wins
            if k == key or k.startswith(key + ".") or key.startswith(k + "."):
                return f"--set {text}"
        line = self.lines.get(key)
        return f"{self.source} line {line}" if line else self.source


@functools.cache
def _section_leaves() -> dict[str, str]:
    """Every ``section.key`` of the schema, mapped to its last part."""
    hints = _hints(Config)
    return {f"{s.name}.{f.name}": f.name for s in _user_fields(Config) if dataclasses.is_dataclass(hints[s.name])
            for f in _user_fields(hints[s.name])}


def _suggest(cls: type, prefix: str, name: str) -> str | None:
    """The likely intended key for an unknown ``name`` under section ``cls``."""
    close = difflib.get_close_matches(name, [f.name for f in _user_fields(cls)], n=1, cutoff=0.7)
    if close:
        return prefix + close[0]
    # a key put in the wrong section ('lr' under 'train:'), exactly or nearly
    leaves = _section_leaves()
    exact = [path for path, leaf in leaves.items() if leaf == name]
    if exact:
        return exact[0]
    close = difflib.get_close_matches(name, list(leaves.values()), n=1, cutoff=0.8)
    return next(path for path, leaf in leaves.items() if leaf == close[0]) if close else None


def _check_keys(cls: type, raw: Mapping, prefix: str, origin: _Origin, problems: list[str]) -> None:
    """Collect unknown and missing keys of the whole tree, so one error lists them all."""
    hints = _hints(cls)
    names = {f.name for f in _user_fields(cls)}
    for key in raw:
        if not isinstance(key, str):
            section = prefix[:-1]
            problems.append(f"key {key!r} ({type(key).__name__}) under '{section or 'the top level'}' in "
                            f"{origin.where(section) if section else origin.source} is not a name; keys are strings")
            continue
        if key not in names:
            path = prefix + key
            guess = _suggest(cls, prefix, key)
            hint = (f"; did you mean '{guess}'?" if guess
                    else f". Valid keys{' of ' + repr(prefix[:-1]) if prefix else ''}: "
                         f"{', '.join(f.name for f in _user_fields(cls))}")
            problems.append(f"unknown key '{path}' in {origin.where(path)}{hint}")
    for f in _user_fields(cls):
        sub_cls = hints[f.name]
        if dataclasses.is_dataclass(sub_cls):
            sub = raw.get(f.name)
            sub = {} if sub is None else sub  # 'optim:' with nothing under it: all defaults
            if isinstance(sub, Mapping):  # a non-mapping section is reported as a wrong type when building
                _check_keys(sub_cls, sub, f"{prefix}{f.name}.", origin, problems)
        elif _is_required(f) and f.name not in raw:
            path = prefix + f.name
            problems.append(f"missing required key '{path}' in {origin.source}; add it ({_type_name(sub_cls)}) or "
                            f"pass --set {path}=VALUE")


def _build(cls: type, raw: Any, prefix: str, origin: _Origin) -> Any:
    """Construct section ``cls`` from a checked mapping, re-raising field errors with their origin."""
    key = prefix.rstrip(".")
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"wrong type for '{key}' in {origin.where(key)}: expected {_type_name(cls)}, got "
                          f"{_show(raw)} ({type(raw).__name__})")
    hints = _hints(cls)
    kwargs = {}
    for f in _user_fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            if f.name in raw or _is_required(f):
                kwargs[f.name] = _build(hints[f.name], raw.get(f.name, {}), f"{prefix}{f.name}.", origin)
        elif f.name in raw:
            kwargs[f.name] = raw[f.name]
    if cls is Config:
        kwargs["source"] = origin.source
    try:
        return cls(**kwargs)
    except _FieldError as e:
        raise ConfigError(f"{e.problem} for '{e.key}' in {origin.where(e.key)}: {e.detail}") from None


def _schema_type(path: list[str]) -> Any | None:
    """The annotation at a dotted path of the schema (a section class or a leaf type); None when not in it."""
    tp: Any = Config
    for part in path:
        if not (dataclasses.is_dataclass(tp) and part in {f.name for f in _user_fields(tp)}):
            return None
        tp = _hints(tp)[part]
    return tp


def _apply_override(raw: dict, text: str, origin: _Origin) -> None:
    """Apply one ``a.b.c=value`` to the raw tree; key and type checks happen afterwards, on the whole tree."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(parts):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted key, e.g. train.max_steps=100; got {text!r}")
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"cannot parse the value of --set {text}: {problem}. The value is read as YAML: close "
                          f"brackets and quotes, or quote the whole value to pass it as a string.") from None
    target = _schema_type(parts)
    if dataclasses.is_dataclass(target):
        raise ConfigError(f"--set {text}: '{key}' is a section; set its keys one by one, e.g. --set "
                          f"{key}.{_user_fields(target)[0].name}=VALUE")
    if target is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            _coerce(value, target)
        except _Mismatch:  # 'train.run_name=1.10': a text field takes the text as typed, not the number
            if _is_union(target) and str in typing.get_args(target) or target is str:
                value = value_text.strip()
    node = raw
    for i, part in enumerate(parts[:-1]):
        if part not in node or node[part] is None and dataclasses.is_dataclass(_schema_type(parts[: i + 1])):
            node[part] = {}  # creates keys inside free-form mappings too; unknown keys are reported afterwards
        child = node[part]
        if not isinstance(child, dict):
            here = ".".join(parts[: i + 1])
            raise ConfigError(f"--set {text}: '{here}' is {_show(child)} ({type(child).__name__}) in "
                              f"{origin.where(here)}, not a mapping, so '{key}' cannot be set inside it")
        node = child
    node[parts[-1]] = value
    origin.overrides.pop(key, None)
    origin.overrides[key] = text


def _resolve(raw: Any, origin: _Origin, overrides: Iterable[str]) -> Config:
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of 'KEY=VALUE' strings, got the string {overrides!r}; "
                          f"wrap it in a list")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{origin.source} must hold a mapping of sections (task, model, data, optim, train), got "
                          f"{_show(raw)} ({type(raw).__name__})")
    raw = copy.deepcopy(dict(raw))
    for text in overrides:
        _apply_override(raw, text, origin)
    problems: list[str] = []
    _check_keys(Config, raw, "", origin, problems)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems in {origin.source}:\n  " + "\n  ".join(problems))
    return _build(Config, raw, "", origin)


def _yaml_error(path: str, e: yaml.YAMLError) -> ConfigError:
    mark = getattr(e, "problem_mark", None)
    at = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    what = " ".join(p for p in (getattr(e, "context", None), getattr(e, "problem", None)) if p) or str(e)
    return ConfigError(f"YAML syntax error in {path}{at}: {what}. Fix the file (indentation, a missing ':' or an "
                       f"unclosed bracket or quote are the usual causes).")


def _line_map(node: yaml.Node, prefix: str, path: str, out: dict[str, int]) -> None:
    """Record the line of every mapping key and reject duplicate keys, which PyYAML would silently overwrite."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise ConfigError(f"duplicate key '{prefix}{key_node.value}' in {path} lines {seen[key_node.value]} and "
                              f"{line}; keep one (YAML would silently use the last)")
        seen[key_node.value] = line
        out[prefix + key_node.value] = line
        _line_map(value_node, f"{prefix}{key_node.value}.", path, out)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config, check it, fill defaults and apply ``--set`` overrides.

    Args:
        path: the YAML file (one flat file per run; no inheritance).
        overrides: ``a.b.c=value`` strings; the value is parsed as YAML (``train.max_steps=100``,
            ``data.crop_size=[256,320]``, ``model.weights=null``). Keys inside the free-form mappings
            ``model.timm_kwargs``, ``model.head_kwargs`` and ``data.options`` may be created.

    Returns:
        The checked :class:`Config`, with ``source`` set to ``path``.

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown or missing key, wrong type or bad value; the
            message names the key, the file and line (or the ``--set`` argument) and the fix.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist (working directory {Path.cwd()}). Pass the path of "
                          "a YAML file, e.g. configs/seg/synthetic_tiny.yaml.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {source}: {type(e).__name__}: {e}") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        raw = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from None
    finally:
        loader.dispose()
    if raw is None:
        raise ConfigError(f"config file {source} is empty; it needs at least task, model, data and train sections.")
    origin = _Origin(source)
    _line_map(node, "", source, origin.lines)
    return _resolve(raw, origin, overrides)


def config_from_dict(d: Mapping[str, Any], source: str = "<dict>", *, overrides: Iterable[str] = ()) -> Config:
    """Build a checked :class:`Config` from a plain mapping shaped like the YAML files (``d`` is not modified).

    Args:
        d: sections ``task``, ``model``, ``data``, ``optim`` (optional), ``train``.
        source: names the origin in error messages and in ``Config.source``.
        overrides: ``a.b.c=value`` strings, as for :func:`load_config`.

    Raises:
        ConfigError: as :func:`load_config`.
    """
    return _resolve(d, _Origin(source), overrides)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain YAML-ready data (lists, not tuples), without ``source``."""

    def convert(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {f.name: convert(getattr(obj, f.name)) for f in _user_fields(type(obj))}
        return copy.deepcopy(_plain(obj))

    return convert(cfg)


class _Dumper(yaml.SafeDumper):
    """Sections as blocks, lists inline (``crop_size: [480, 640]``), like the hand-written configs."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` as YAML that :func:`load_config` reads back to an equal :class:`Config`.

    Args:
        cfg: the configuration.
        path: the file to write; parent directories are created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# resolved ivtune config (from {cfg.source or 'Python'}); load with ivtune.config.load_config\n"
    body = yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    return path
