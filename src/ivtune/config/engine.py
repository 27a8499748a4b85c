"""A schema engine for YAML configs made of dataclass sections: type coercion, value checks, unknown-key errors with
file, line and a suggestion, ``--set`` overrides and a YAML dump. It knows no ivtune names: the run schema
(:mod:`ivtune.config.run`) and the task data sections (:mod:`ivtune.config.data`) are built on it.

A section is a dataclass deriving :class:`Section`; its ``_section`` is its dotted key and ``_check`` its value
checks. A section whose concrete class depends on other values of the file (the ``data:`` section depends on
``task:`` and ``data.dataset``) defines a classmethod ``_choose(raw_parent)`` returning the class to use; errors it
raises are reported with the file and line of the section.

Every error is a :class:`ivtune.errors.ConfigError` that names the key, where it came from (file and line, or the
``--set`` argument), what was expected and what was seen::

    unknown key 'optim.lrr' in configs/seg/x.yaml line 12; did you mean 'optim.lr'?
    wrong type for 'train.max_steps' in --set train.max_steps=ten: expected int, got 'ten' (str)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from ..errors import ConfigError

__all__ = ["Section", "FieldError", "load_yaml", "from_mapping", "to_dict", "dump_yaml", "concrete_section",
           "schema_leaves"]

_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # PyYAML reads '6e-5' (no dot) as a string
_DEVICES_TEXT = re.compile(r"auto|-1|\d+|\d+(\s*,\s*\d+)*\s*,?")  # Lightning's string forms: "2", "0,1", "1,"


# ---------------------------------------------------------------------------------------------------------- errors
class FieldError(ConfigError):
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
class Section:
    """Shared ``__post_init__``: coerce every field to its annotation, then run the section's value checks."""

    _section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                setattr(self, f.name, _coerce(value, hints[f.name]))
            except _Mismatch:
                raise FieldError(
                    self._key(f.name), "wrong type",
                    f"expected {_type_name(hints[f.name])}, got {_show(value)} ({type(value).__name__})",
                ) from None
        self._check()

    def _check(self) -> None:
        """Value and cross-field checks; raise with :meth:`_bad`."""

    def _key(self, name: str) -> str:
        return f"{self._section}.{name}" if self._section else name

    def _bad(self, name: str, detail: str) -> typing.NoReturn:
        raise FieldError(self._key(name), "bad value", detail)

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


def concrete_section(tp: Any, raw_parent: Any, origin: _Origin | None = None, key: str = "") -> Any:
    """The class of a section: ``tp`` itself, or what its ``_choose`` picks from the parent's raw values."""
    choose = getattr(tp, "_choose", None)
    if choose is None or not isinstance(raw_parent, Mapping):
        return tp
    try:
        return choose(raw_parent)
    except FieldError as e:
        where = origin.where(e.key) if origin is not None else "the config"
        raise ConfigError(f"{e.problem} for '{e.key}' in {where}: {e.detail}") from None


@functools.cache
def schema_leaves(root: type) -> dict[str, str]:
    """Every ``section.key`` of the schema under ``root``, mapped to its last part (for suggestions)."""
    hints = _hints(root)
    return {f"{s.name}.{f.name}": f.name for s in _user_fields(root) if dataclasses.is_dataclass(hints[s.name])
            for f in _user_fields(hints[s.name])}


def _suggest(cls: type, prefix: str, name: str, root: type) -> str | None:
    """The likely intended key for an unknown ``name`` under section ``cls``."""
    close = difflib.get_close_matches(name, [f.name for f in _user_fields(cls)], n=1, cutoff=0.7)
    if close:
        return prefix + close[0]
    # a key put in the wrong section ('lr' under 'train:'), exactly or nearly
    leaves = schema_leaves(root)
    exact = [path for path, leaf in leaves.items() if leaf == name]
    if exact:
        return exact[0]
    close = difflib.get_close_matches(name, list(leaves.values()), n=1, cutoff=0.8)
    return next(path for path, leaf in leaves.items() if leaf == close[0]) if close else None


def _check_keys(cls: type, raw: Mapping, prefix: str, origin: _Origin, problems: list[str], root: type) -> None:
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
            guess = _suggest(cls, prefix, key, root)
            owner_hint = getattr(cls, "_key_hint", lambda _: None)(key)
            hint = (owner_hint if owner_hint else f"; did you mean '{guess}'?" if guess
                    else f". Valid keys{' of ' + repr(prefix[:-1]) if prefix else ''}: "
                         f"{', '.join(f.name for f in _user_fields(cls))}")
            problems.append(f"unknown key '{path}' in {origin.where(path)}{hint}")
    for f in _user_fields(cls):
        sub_cls = hints[f.name]
        if dataclasses.is_dataclass(sub_cls):
            sub = raw.get(f.name)
            sub = {} if sub is None else sub  # 'optim:' with nothing under it: all defaults
            if isinstance(sub, Mapping):  # a non-mapping section is reported as a wrong type when building
                sub_cls = concrete_section(sub_cls, raw, origin, prefix + f.name)
                _check_keys(sub_cls, sub, f"{prefix}{f.name}.", origin, problems, root)
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
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal") == "source":
            kwargs[f.name] = origin.source
        elif f.metadata.get("internal"):
            continue
        elif dataclasses.is_dataclass(hints[f.name]):
            if f.name in raw or _is_required(f):
                sub_cls = concrete_section(hints[f.name], raw, origin, prefix + f.name)
                kwargs[f.name] = _build(sub_cls, raw.get(f.name, {}), f"{prefix}{f.name}.", origin)
        elif f.name in raw:
            kwargs[f.name] = raw[f.name]
    try:
        return cls(**kwargs)
    except FieldError as e:
        raise ConfigError(f"{e.problem} for '{e.key}' in {origin.where(e.key)}: {e.detail}") from None


def _schema_type(root: type, path: list[str], raw: Mapping) -> Any | None:
    """The annotation at a dotted path of the schema (a section class or a leaf type); None when not in it."""
    tp: Any = root
    node: Any = raw
    for part in path:
        if not (dataclasses.is_dataclass(tp) and part in {f.name for f in _user_fields(tp)}):
            return None
        tp = _hints(tp)[part]
        if dataclasses.is_dataclass(tp):
            try:
                tp = concrete_section(tp, node)
            except ConfigError:
                pass  # reported when the whole tree is checked
        node = node.get(part) if isinstance(node, Mapping) else None
    return tp


def _apply_override(root: type, raw: dict, text: str, origin: _Origin) -> None:
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
    target = _schema_type(root, parts, raw)
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
        if part not in node or node[part] is None and dataclasses.is_dataclass(_schema_type(root, parts[: i + 1],
                                                                                           raw)):
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


def _resolve(root: type, raw: Any, origin: _Origin, overrides: Iterable[str],
             upgrade: typing.Callable[[dict, _Origin], dict] | None) -> Any:
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of 'KEY=VALUE' strings, got the string {overrides!r}; "
                          f"wrap it in a list")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        sections = ", ".join(f.name for f in _user_fields(root))
        raise ConfigError(f"{origin.source} must hold a mapping of sections ({sections}), got "
                          f"{_show(raw)} ({type(raw).__name__})")
    raw = copy.deepcopy(dict(raw))
    if upgrade is not None:  # an older layout of the same schema, rewritten before any check
        raw = upgrade(raw, origin)
    for text in overrides:
        _apply_override(root, raw, text, origin)
    problems: list[str] = []
    _check_keys(root, raw, "", origin, problems, root)
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} problems in {origin.source}:\n  " + "\n  ".join(problems))
    return _build(root, raw, "", origin)


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


def load_yaml(path: str | Path, root: type, overrides: Iterable[str] = (), *, example: str = "config.yaml",
              upgrade: typing.Callable[[dict, _Origin], dict] | None = None) -> Any:
    """Read a YAML file into the schema ``root``: check it, fill defaults and apply ``KEY=VALUE`` overrides.

    Args:
        path: the YAML file.
        root: the top-level section class.
        overrides: ``a.b.c=value`` strings; the value is parsed as YAML.
        example: a file name shown when ``path`` does not exist.
        upgrade: rewrites an older layout of the raw mapping before the checks (it may note what it moved in
            ``origin.lines`` so errors still point at the file's lines).

    Raises:
        ConfigError: unreadable file, YAML syntax error, unknown or missing key, wrong type or bad value.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist (working directory {Path.cwd()}). Pass the path of "
                          f"a YAML file, e.g. {example}.") from None
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
        sections = ", ".join(f.name for f in _user_fields(root))
        raise ConfigError(f"config file {source} is empty; it needs the sections {sections}.")
    origin = _Origin(source)
    _line_map(node, "", source, origin.lines)
    return _resolve(root, raw, origin, overrides, upgrade)


def from_mapping(d: Mapping[str, Any], root: type, source: str = "<dict>", *, overrides: Iterable[str] = (),
                 upgrade: typing.Callable[[dict, _Origin], dict] | None = None) -> Any:
    """Build a checked ``root`` from a plain mapping shaped like the YAML files (``d`` is not modified)."""
    return _resolve(root, d, _Origin(source), overrides, upgrade)


def to_dict(obj: Any) -> dict[str, Any]:
    """A section tree as plain YAML-ready data (lists, not tuples), without internal fields."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in _user_fields(type(value))}
        return copy.deepcopy(_plain(value))

    return convert(obj)


class _Dumper(yaml.SafeDumper):
    """Sections as blocks, lists inline (``crop_size: [480, 640]``), like the hand-written configs."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_yaml(obj: Any, path: str | Path, header: str = "") -> Path:
    """Write a section tree as YAML that :func:`load_yaml` reads back to an equal tree; parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.dump(to_dict(obj), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    return path
