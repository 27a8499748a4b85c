"""The run schema: ``task``, ``model``, ``data`` (the task's section), ``optim`` and ``train``, on the schema engine.

One YAML file per (task, dataset, backbone) under ``configs/`` sets every value of a run; ``--set a.b=c`` overrides
any key from the command line (the value is parsed as YAML). There is no inheritance between files: what a run used
is what its file says, and :func:`save_config` writes the resolved configuration next to the run. Files in the
layout of ivtune 0.x before the task sections (``data.options``, SOD's ``crop_size``) are read through
:func:`ivtune.config.legacy.upgrade_layout`.

Typical use (the tasks register their data sections on ``import ivtune.tasks``; ``ivtune.load_config`` does it)::

    cfg = load_config("configs/seg/mfnet_swin_l_segformer.yaml", ["train.max_steps=100", "data.root=/data/MFNet"])
    save_config(cfg, "runs/x/config.yaml")
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..builder import ADAPTER_INITS
from ..errors import ConfigError
from ..methods import METHODS, get_method, method_config
from .data import DataConfig, registered_tasks
from .engine import Section, dump_yaml, from_mapping, load_yaml, to_dict
from .legacy import upgrade_layout

__all__ = ["Config", "ModelConfig", "OptimConfig", "TrainConfig", "load_config", "config_from_dict",
           "config_to_dict", "save_config", "OPTIMIZERS", "SCHEDULES", "PRECISIONS", "ACCELERATORS"]

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("poly", "step", "constant")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# set by ivtune itself when it builds the timm model (build_backbone); a timm kwarg would fight it
RESERVED_TIMM_KWARGS = {
    "pretrained": "use model.pretrained or model.weights",
    "features_only": "ivtune builds the plain timm model and taps features itself",
    "num_classes": "ivtune builds the backbone without a classifier (num_classes=0)",
}
_DEVICES_TEXT = re.compile(r"auto|-1|\d+|\d+(\s*,\s*\d+)*\s*,?")  # Lightning's string forms: "2", "0,1", "1,"


@dataclass(kw_only=True)
class ModelConfig(Section):
    """The two-input backbone and the task head.

    Attributes:
        backbone: timm model name, optionally with a pretrained tag (``swin_large_patch4_window12_384.ms_in22k``).
        method: training method, a key of ``ivtune.METHODS`` (``iv-tuning``: frozen backbone; ``full``).
        pretrained: load timm's pretrained weights for ``backbone`` from the hub (network or warm cache).
        weights: local ``.safetensors`` / ``.pth`` state dict (relative paths are taken from the working
            directory); wins over ``pretrained``.
        out_indices: Swin: stages to return; ViT/EVA: the four blocks tapped for the pyramid; null: the default.
        method_config: the method's hyperparameters (peft's manner: IV-tuning ``adapter_hidden``, ``prompt_hidden``,
            ``dropout``, ``init``; LoRA ``rank``, ``alpha``; VPT ``num_tokens``; AdaptFormer ``bottleneck``, ``scale``),
            checked against the method's config class; empty: the method's defaults (docs/METHOD.md section 6).
        adapter_init: shortcut for ``method_config.init`` (``default``: the authors' init; ``zeros``: last
            projections zeroed); null: from ``method_config``.
        adapter_dropout: shortcut for ``method_config.dropout`` (dropout inside every Hybrid Adapter); null: from
            ``method_config``.
        timm_kwargs: extra ``timm.create_model`` kwargs (``img_size``, ``drop_path_rate``, tiny ``depth`` ...).
        head: task head name (segmentation: ``segformer``).
        head_kwargs: kwargs of the head.
        detector_weights: detection, ``head: rtdetr``: a trained RT-DETR's local state dict (``.safetensors`` /
            ``.bin`` / ``.pth``, e.g. COCO-trained) loaded into the encoder and decoder after construction; its
            backbone and every tensor whose shape differs (class heads, input projections) are skipped and named
            in the log. null: the detector starts from random init.
        grad_checkpointing: recompute backbone block activations in backward (saves memory, costs time).
        compile: compile the backbone's blocks with ``torch.compile`` (``IVBackbone.compile``: regional, static
            shapes; CUDA graphs for inference without gradients on a GPU). The first steps at each input size
            compile (seconds to minutes); use a few fixed sizes when training multi-scale.
    """

    _section: ClassVar[str] = "model"

    backbone: str
    method: str = "iv-tuning"
    pretrained: bool = False
    weights: str | None = None
    out_indices: list[int] | None = None
    method_config: dict[str, Any] = field(default_factory=dict)
    adapter_init: str | None = None
    adapter_dropout: float | None = None
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    head: str = "segformer"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    detector_weights: str | None = None
    grad_checkpointing: bool = False
    compile: bool = False

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
        if self.adapter_init is not None:
            self._one_of("adapter_init", ADAPTER_INITS)
        if self.adapter_dropout is not None and not 0.0 <= self.adapter_dropout < 1.0:
            self._bad("adapter_dropout", f"is a probability in [0, 1), got {self.adapter_dropout}")
        if self.method in METHODS:
            try:
                self.resolved_method_config()
            except ConfigError as e:
                self._bad("method_config", str(e))
        for key, why in RESERVED_TIMM_KWARGS.items():
            if key in self.timm_kwargs:
                self._bad("timm_kwargs", f"must not contain {key!r}: {why}. Remove model.timm_kwargs.{key}")
        self._nonempty("head")
        self._nonempty("detector_weights", optional=True)

    def resolved_method_config(self) -> Any:
        """The method's config object: ``method_config`` with the two shortcuts applied."""
        values = dict(self.method_config)
        known = {f.name for f in dataclasses.fields(get_method(self.method).config_cls)}
        for key, name in (("adapter_init", "init"), ("adapter_dropout", "dropout")):
            if getattr(self, key) is not None and name in known:  # methods without the field ignore the shortcut
                if name in values and values[name] != getattr(self, key):
                    raise ConfigError(f"model.{key} ({getattr(self, key)!r}) contradicts model.method_config.{name} "
                                      f"({values[name]!r}); keep one")
                values[name] = getattr(self, key)
        return method_config(self.method, values)


@dataclass(kw_only=True)
class OptimConfig(Section):
    """Optimiser and learning-rate schedule (defaults: docs/METHOD.md section 9.2, the mmseg SegFormer recipe).

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
class TrainConfig(Section):
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
        modality_dropout: per training sample, the probability of dropping one modality (VIS or IR, equally
            likely), which becomes the missing-modality input of ``ivtune eval --degrade ir:missing``
            (docs/METHOD.md section 14); 0: off.
        misalign: per training sample, shift the IR image by a random integer offset in [-misalign, misalign]
            pixels in x and y (as ``--degrade shift=DX,DY``; targets stay in the visible frame); 0: off.
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
    modality_dropout: float = 0.0
    misalign: int = 0

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
        if not 0.0 <= self.modality_dropout <= 1.0:
            self._bad("modality_dropout", f"is a probability in [0, 1], got {self.modality_dropout}")
        self._at_least("misalign", 0)


@dataclass(kw_only=True)
class Config(Section):
    """A whole run: task, model, data, optimiser, loop.

    Attributes:
        task: a registered task (``seg``, ``sod``, ``det``).
        model: :class:`ModelConfig`.
        data: the task's data section (a :class:`ivtune.config.data.DataConfig` subclass chosen by ``task`` and
            ``data.dataset``).
        optim: :class:`OptimConfig`.
        train: :class:`TrainConfig`.
        source: where it was loaded from (a path, ``<dict>``); not a YAML key, not compared.
    """

    task: str
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig
    source: str | None = field(default=None, compare=False, metadata={"internal": "source"})

    def _check(self) -> None:
        self._one_of("task", registered_tasks())
        if self.optim.schedule != "constant" and self.optim.warmup_iters >= self.train.max_steps:
            warnings.warn(
                f"optim.warmup_iters ({self.optim.warmup_iters}) >= train.max_steps ({self.train.max_steps}): the "
                "run never leaves warm-up. Lower it, e.g. --set optim.warmup_iters=0.", UserWarning, stacklevel=4)


# -------------------------------------------------------------------------------------------------- loading
def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config, check it, fill defaults and apply ``--set`` overrides.

    Args:
        path: the YAML file (one flat file per run; no inheritance).
        overrides: ``a.b.c=value`` strings; the value is parsed as YAML (``train.max_steps=100``,
            ``data.crop_size=[256,320]``, ``model.weights=null``). Keys inside the free-form mappings
            ``model.timm_kwargs`` and ``model.head_kwargs`` may be created.

    Returns:
        The checked :class:`Config`, with ``source`` set to ``path``.

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown or missing key, wrong type or bad value; the
            message names the key, the file and line (or the ``--set`` argument) and the fix.
    """
    return load_yaml(path, Config, overrides, example="configs/seg/synthetic_tiny.yaml", upgrade=upgrade_layout)


def config_from_dict(d: Mapping[str, Any], source: str = "<dict>", *, overrides: Iterable[str] = ()) -> Config:
    """Build a checked :class:`Config` from a plain mapping shaped like the YAML files (``d`` is not modified)."""
    return from_mapping(d, Config, source, overrides=overrides, upgrade=upgrade_layout)


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The configuration as plain YAML-ready data (lists, not tuples), without ``source``."""
    return to_dict(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` as YAML that :func:`load_config` reads back to an equal :class:`Config`."""
    header = f"# resolved ivtune config (from {cfg.source or 'Python'}); load with ivtune.load_config\n"
    return dump_yaml(cfg, path, header)
