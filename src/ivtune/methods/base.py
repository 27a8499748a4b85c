"""Training methods: the ``Method`` record, its registry, and the config classes every method's config builds on.

A method (docs/METHOD.md sections 6 and 10) says how the two-input network is made from the plain timm model
(which wrapper goes around every block, whether the IR entry exists, or two branches) and what trains. Its
hyperparameters are a frozen config dataclass, validated on construction and saved beside the adapter weights, the
way peft saves a ``LoraConfig`` in ``adapter_config.json``. Each method has its own module in this package.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import nn

from ..backbones.base import BlockWrapperFactory, IVBackbone
from ..backbones.family import Family
from ..errors import ConfigError

ADAPTER_INITS = ("default", "zeros")


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """Base of every method config: frozen, validated on construction, a plain dict via :meth:`to_dict`."""

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        """Raise :class:`ConfigError` naming the field, its value and the valid range; subclasses extend it."""

    @property
    def zero_init(self) -> bool:
        """Zero the added modules' last projections after building (the network then starts as the frozen one)."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain (JSON-ready) dict; ``method_config(method, d)`` rebuilds the config."""
        return asdict(self)

    # ------------------------------------------------------------------ validation helpers for subclasses
    def _bad(self, name: str, valid: str) -> None:
        raise ConfigError(f"{type(self).__name__}.{name} = {getattr(self, name)!r} is invalid: it must be {valid}.")

    def _integer(self, name: str, low: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            self._bad(name, f"an integer >= {low}")

    def _number(self, name: str, low: float, high: float = math.inf, *, low_open: bool = False) -> None:
        """A float in ``[low, high)`` (``(low, high)`` with ``low_open``); an int is stored as a float."""
        value = getattr(self, name)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not ((low < value) if low_open else (low <= value)) or not value < high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g})"
            self._bad(name, f"a number in {interval}")
        object.__setattr__(self, name, float(value))  # 8 and 8.0 are one value in memory and in the JSON file

    def _one_of(self, name: str, choices: tuple[str, ...]) -> None:
        if getattr(self, name) not in choices:
            self._bad(name, f"one of {', '.join(map(repr, choices))}")


@dataclass(frozen=True, kw_only=True)
class EmptyConfig(MethodConfig):
    """The config of a method without hyperparameters (``vis-only-full``, ``dual-branch``)."""


@dataclass(frozen=True, kw_only=True)
class IREntryConfig(MethodConfig):
    """What every method with the IV-tuning IR entry (IR patch embedding + prompt stem) shares.

    Attributes:
        empg_hidden: EMPG width of the prompt stem: 8 in the final method, 64 in the authors' ViTDet-B
            (docs/METHOD.md sections 3.6 and 7).
        init: ``default`` (the authors' init, docs/METHOD.md section 6) or ``zeros``: the last projection of the
            EMPG and of every added in-block module zeroed, so the network starts as the frozen visible-only one.
    """

    empg_hidden: int = 8
    init: str = "default"

    def _check(self) -> None:
        super()._check()
        self._integer("empg_hidden", 1)
        self._one_of("init", ADAPTER_INITS)

    @property
    def zero_init(self) -> bool:
        return self.init == "zeros"


BuildFn = Callable[[nn.Module, Family, "list[int] | None", Any], IVBackbone]


def ir_entry_build(block_wrapper: Callable[[Any], BlockWrapperFactory] | None = None) -> BuildFn:
    """The ``build`` of a method with the IV-tuning IR entry: the prompt stem sized by ``config.empg_hidden``, and
    ``block_wrapper(config)`` around every block (None: the timm blocks stay as they are)."""

    def build(model: nn.Module, family: Family, out_indices: list[int] | None, config: IREntryConfig) -> IVBackbone:
        wrapper = block_wrapper(config) if block_wrapper is not None else None
        return IVBackbone(model, family, out_indices, empg_hidden=config.empg_hidden, block_wrapper=wrapper)

    return build


@dataclass(frozen=True)
class Method:
    """One training method.

    Attributes:
        name: the registry key (``build_backbone(method=...)``, ``model.method`` in a run config).
        description: one line for listings.
        config_cls: its hyperparameters (a :class:`MethodConfig` subclass).
        build: ``(model, family, out_indices, config) -> IVBackbone`` from the plain timm model, weights loaded.
        configure: sets ``requires_grad`` on the fresh backbone: what trains.
        families: the backbone family names it supports (None: all).
        trains_backbone: every pretrained tensor trains, so an adapter file holds the whole network.
    """

    name: str
    description: str
    config_cls: type[MethodConfig]
    build: BuildFn
    configure: Callable[[IVBackbone], None]
    families: tuple[str, ...] | None = None
    trains_backbone: bool = False


METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (a baseline plugs in without touching the builder); returns it."""
    if method.name in METHODS:
        raise ConfigError(f"method {method.name!r} is already registered; pick another name.")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The registered method called ``name``; :class:`ConfigError` listing the available ones otherwise."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}. Available: {', '.join(sorted(METHODS))}.")
    return METHODS[name]


def method_config(method: str, values: Mapping[str, Any] | MethodConfig | None = None) -> MethodConfig:
    """Build (and validate) ``method``'s config from a plain dict, or check a ready config object.

    Args:
        method: a key of :data:`METHODS`.
        values: None (every default), a mapping of field names to values (e.g. from YAML or
            ``adapter_config.json``), or an instance of the method's ``config_cls``.

    Raises:
        ConfigError: unknown method, unknown key (with the closest valid key), a config of another class, or a
            value out of range.
    """
    cls = get_method(method).config_cls
    if values is None:
        return cls()
    if isinstance(values, MethodConfig):
        if type(values) is not cls:
            raise ConfigError(
                f"method {method!r} takes {cls.__name__}, got {type(values).__name__}. Pass {cls.__name__}(...) "
                "or a dict of its fields."
            )
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"the config of method {method!r} must be a {cls.__name__} or a dict, got {type(values).__name__}."
        )
    valid = sorted(f.name for f in fields(cls))
    for key in values:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            listed = ", ".join(valid) if valid else "none (the method has no hyperparameters)"
            raise ConfigError(f"unknown key {key!r} for method {method!r}{hint} Valid: {listed}.")
    return cls(**values)


# ---------------------------------------------------------------------------------------- what trains
def train_added_modules(backbone: IVBackbone) -> None:
    """Freeze the timm model; train exactly the modules the backbone added (found structurally)."""
    backbone.requires_grad_(False)
    for m in backbone.iv_modules():
        m.requires_grad_(True)


def train_everything(backbone: IVBackbone) -> None:
    """Full fine-tuning: every tensor trains."""
    backbone.requires_grad_(True)
