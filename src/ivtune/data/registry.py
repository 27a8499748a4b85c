"""One dataset registry entry and one builder for every task's datasets.

A task keeps ``{name: DatasetEntry}``; :func:`build_from_registry` checks the name, the split, the options and the
root the same way for all of them, and the config derives each dataset's typed ``data:`` keys from the keyword-only
arguments of ``entry.build`` (:mod:`ivtune.config.data`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class DatasetEntry:
    """How to build one dataset.

    Attributes:
        build: ``build(root, split, transform, *, strict, **options) -> dataset``; its keyword-only arguments
            (with defaults) are the dataset's options.
        splits: valid split names; None when they are the folders found under the root.
        classes: the class list; None when it comes from the root or the options.
        needs_root: False for generated data.
        excluded_options: keyword arguments the task sets itself (never from a config), e.g. ``strict``.
    """

    build: Callable[..., Any]
    splits: tuple[str, ...] | None
    classes: tuple[str, ...] | None
    needs_root: bool = True
    excluded_options: tuple[str, ...] = ("strict",)

    def options(self) -> list[str]:
        """Keyword options ``build`` accepts from a config."""
        params = inspect.signature(self.build).parameters.values()
        return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY
                and p.name not in self.excluded_options]


def build_from_registry(registry: Mapping[str, DatasetEntry], what: str, name: str, root: str | Path | None,
                        split: str, transform: Any = None, *, strict: bool = True, **options: Any) -> Any:
    """Build dataset ``name`` of ``registry`` (``what`` names the task in messages, e.g. ``detection``).

    Raises:
        ConfigError: unknown name, split or option, or a missing root; the message lists the valid ones.
    """
    key = name.lower()
    if key not in registry:
        close = difflib.get_close_matches(key, list(registry), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown {what} dataset {name!r}. Known: {', '.join(sorted(registry))}.{hint}")
    entry = registry[key]
    if entry.splits is not None and split not in entry.splits:
        raise ConfigError(f"Unknown split {split!r} for {what} dataset {key!r}. Valid splits: "
                          f"{', '.join(entry.splits)}.")
    accepted = entry.options()
    unknown = sorted(set(options) - set(accepted) - set(entry.excluded_options))
    if unknown:
        raise ConfigError(f"Unknown option(s) {', '.join(map(repr, unknown))} for {what} dataset {key!r}. "
                          f"Accepted: {', '.join(accepted)}.")
    if root is None and entry.needs_root:
        raise ConfigError(f"{what.capitalize()} dataset {key!r} needs a root folder; got root=None. Set data.root "
                          "in the config.")
    return entry.build(Path(root) if root is not None else None, split, transform, strict=strict, **options)
