"""Folder plumbing every task's dataset files share: find folders, match pairs by file stem, read split lists."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import DataError
from .pairs import PairRecord, condition_from_name

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else a DataError saying what was expected and what is there instead."""
    if path.is_dir():
        return path
    parent = path.parent
    if parent.is_dir():
        found = sorted(p.name for p in parent.iterdir() if p.is_dir())
        hint = f" {parent} contains folders: {', '.join(found) or '(none)'}."
    else:
        hint = f" {parent} does not exist either."
    raise DataError(f"{what} folder not found: {path}.{hint} Check the dataset root and layout.")


def index_dir(folder: Path) -> dict[str, Path]:
    """``stem -> path`` of the image files in ``folder`` (not recursive)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            if p.stem in out:
                raise DataError(
                    f"Two images share the stem {p.stem!r} in {folder}: {out[p.stem].name} and {p.name}. Pairs are "
                    "matched by stem; keep one of them."
                )
            out[p.stem] = p
    return out


def pair_by_stem(
    vis_dir: Path,
    ir_dir: Path,
    label_dir: Path | None,
    condition: Callable[[str], str | None] = condition_from_name,
) -> list[PairRecord]:
    """Records for the union of stems in the folders; a missing partner gets its expected (absent) path.

    The expected path reuses the extension of a file that exists for that stem, so the error names a plausible file.
    """
    dirs = {"vis": vis_dir, "ir": ir_dir}
    if label_dir is not None:
        dirs["label"] = label_dir
    found = {role: index_dir(d) for role, d in dirs.items()}
    stems = sorted(set().union(*found.values()))
    records = []
    for stem in stems:
        ext = next(found[r][stem].suffix for r in found if stem in found[r])
        paths = {role: str(found[role].get(stem, dirs[role] / f"{stem}{ext}")) for role in dirs}
        records.append(PairRecord(stem, paths["vis"], paths["ir"], paths.get("label"), condition(stem)))
    return records


def read_split_file(path: Path) -> list[str]:
    """Sample names listed one per line (blank lines skipped, an image extension stripped)."""
    if not path.is_file():
        raise DataError(
            f"Split file not found: {path}. It should list one sample name per line (no extension); check the root."
        )
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read split file {path}: {exc}.") from exc
    names = []
    for line in lines:
        name = line.strip()
        if not name:
            continue
        stem, dot, ext = name.rpartition(".")
        names.append(stem if dot and f".{ext.lower()}" in IMAGE_EXTS else name)
    return names


def by_name(
    names: Iterable[str],
    folder: Path,
    ext: str = ".png",
) -> dict[str, str]:
    """``name -> path`` inside ``folder``: the existing file with that stem, else ``folder/name{ext}`` (missing)."""
    index = index_dir(folder) if folder.is_dir() else {}
    return {n: str(index.get(n, folder / f"{n}{ext}")) for n in names}


def read_classes_file(path: Path) -> list[str]:
    """Class names from ``classes.txt``: one per line, as ``name`` or ``index name`` (indices must be 0, 1, ...)."""
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read classes file {path}: {exc}.") from exc
    names = []
    for i, line in enumerate(lines):
        head, _, rest = line.partition(" ")
        if head.isdigit() and rest.strip():
            if int(head) != i:
                raise DataError(
                    f"{path} line {i + 1}: class index {head} out of order; expected {i} (lines must list classes "
                    "0, 1, 2, ... in order)."
                )
            names.append(rest.strip())
        else:
            names.append(line)
    if not names:
        raise DataError(f"Classes file {path} is empty; list one class name per line, class 0 first.")
    return names
