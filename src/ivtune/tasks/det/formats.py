"""Box annotation parsers: COCO json, Pascal VOC xml, YOLO txt, KAIST bbGt v3 txt, pixel ``class x1 y1 x2 y2`` txt.

Every parser returns :class:`RawBoxes` (xyxy, 0-based labels, ignore flags), the one internal representation; pixel
conversion, clipping and dropping happen in :class:`ivtune.data.det.dataset.PairedDetDataset`. A class the dataset
does not know is a :class:`ivtune.errors.DataError` that names the file and lists the known classes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError

KAIST_LABELS = ("person", "people", "person?", "cyclist")
KAIST_SETTINGS = ("reasonable", "all")


@dataclass(eq=False)
class RawBoxes:
    """Boxes of one image as read from its annotation.

    Attributes:
        xyxy: ``(N, 4)`` float64; pixels, or fractions of the image size when ``normalized``.
        labels: ``(N,)`` int64, 0-based class indices.
        ignore: ``(N,)`` bool; ignore regions (KAIST people / person? / cyclist, small or occluded people; COCO
            ``iscrowd``; VOC ``difficult``).
        normalized: coordinates are fractions of the image width / height (YOLO).
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    normalized: bool = False

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[int, float, float, float, float, bool]], normalized: bool = False
                  ) -> RawBoxes:
        """From ``(label, x1, y1, x2, y2, ignore)`` rows."""
        if not rows:
            return cls(normalized=normalized)
        arr = np.asarray([r[1:5] for r in rows], np.float64).reshape(-1, 4)
        return cls(arr, np.asarray([r[0] for r in rows], np.int64), np.asarray([bool(r[5]) for r in rows], bool),
                   normalized)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def unknown_class_error(what: str, value: Any, path: str | Path, known: Sequence[str], where: str = "") -> DataError:
    """The error for a class the dataset does not know, listing the known ones."""
    listed = ", ".join(f"{i}={n}" for i, n in enumerate(known))
    return DataError(
        f"{path}{where}: unknown {what} {value!r}. Known classes ({len(known)}): {listed}. Check that the dataset "
        "name (class list) matches the annotations, or pass the right class list."
    )


def class_index(name: str, classes: Sequence[str], path: str | Path, where: str = "",
                aliases: Mapping[str, str] | None = None) -> int:
    """0-based index of class ``name`` (case-insensitive, after ``aliases``), else an unknown-class DataError."""
    key = name.strip()
    if aliases:
        key = aliases.get(key.lower(), key)
    lowered = [c.lower() for c in classes]
    if key.lower() in lowered:
        return lowered.index(key.lower())
    raise unknown_class_error("class name", name, path, classes, where)


def _read_text(path: str | Path, what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found: {p}. Check the dataset root and layout.")
    try:
        return p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {what} {p}: {exc}.") from exc


def _numbers(tokens: Sequence[str], path: str | Path, lineno: int, fmt: str) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise DataError(f"{path} line {lineno}: expected numbers in {fmt!r}, got {' '.join(tokens)!r}.") from None


def _class_id(token: str, path: str | Path, lineno: int, classes: Sequence[str]) -> int:
    try:
        value = float(token)
    except ValueError:
        raise DataError(f"{path} line {lineno}: class id {token!r} is not an integer.") from None
    if value != int(value) or not 0 <= value < len(classes):
        raise unknown_class_error("class id", token, path, classes, f" line {lineno}")
    return int(value)


def parse_yolo(path: str | Path, classes: Sequence[str]) -> RawBoxes:
    """YOLO txt: one ``class cx cy w h`` line per box, centre and size normalised by the image size.

    Tokens are split on any whitespace (the MSRS fusion files use two spaces, trailing spaces and no final newline);
    blank lines are skipped; an empty file is an image without boxes.
    """
    rows = []
    for lineno, line in enumerate(_read_text(path, "YOLO label file").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            raise DataError(f"{path} line {lineno}: expected 5 values 'class cx cy w h', got {len(tokens)}: {line!r}.")
        label = _class_id(tokens[0], path, lineno, classes)
        cx, cy, w, h = _numbers(tokens[1:], path, lineno, "class cx cy w h")
        rows.append((label, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, False))
    return RawBoxes.from_rows(rows, normalized=True)


def parse_pixel_boxes(path: str | Path, classes: Sequence[str], id_map: Mapping[int, int] | None = None) -> RawBoxes:
    """``class_id x1 y1 x2 y2`` lines in pixels (what :func:`ivtune.data.write_synthetic_dataset` writes).

    Args:
        path: the txt file.
        classes: the dataset's class names.
        id_map: file class id -> 0-based dataset index (default identity); an id outside it is an unknown class.
    """
    rows = []
    for lineno, line in enumerate(_read_text(path, "box file").splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            raise DataError(f"{path} line {lineno}: expected 5 values 'class_id x1 y1 x2 y2', got {line!r}.")
        if id_map is None:
            label = _class_id(tokens[0], path, lineno, classes)
        else:
            try:
                label = id_map[int(float(tokens[0]))]
            except (KeyError, ValueError):
                raise unknown_class_error("class id", tokens[0], path, classes, f" line {lineno}") from None
        x1, y1, x2, y2 = _numbers(tokens[1:], path, lineno, "class_id x1 y1 x2 y2")
        rows.append((label, x1, y1, x2, y2, False))
    return RawBoxes.from_rows(rows)


def parse_voc(path: str | Path, classes: Sequence[str], aliases: Mapping[str, str] | None = None
              ) -> tuple[RawBoxes, tuple[int, int] | None]:
    """Pascal VOC xml (LLVIP's release): ``<object><name>`` + ``<bndbox>`` xmin/ymin/xmax/ymax.

    Coordinates are taken as they are (no ``-1``: LLVIP's boxes start at 0 and mmdetection reads them the same way).
    ``<difficult>1`` becomes an ignore region.

    Returns:
        ``(boxes, (H, W) from <size> or None)``.
    """
    text = _read_text(path, "VOC annotation")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DataError(f"Cannot parse VOC xml {path}: {exc}.") from exc
    size = None
    sz = root.find("size")
    if sz is not None and sz.findtext("width") and sz.findtext("height"):
        try:
            size = (int(float(sz.findtext("height"))), int(float(sz.findtext("width"))))
        except ValueError:
            raise DataError(f"{path}: <size> has non-numeric width/height.") from None
        if size[0] <= 0 or size[1] <= 0:
            size = None  # some converters write 0 x 0; fall back to the image header
    rows = []
    for k, obj in enumerate(root.iter("object")):
        name = obj.findtext("name")
        if name is None:
            raise DataError(f"{path}: <object> #{k} has no <name>.")
        label = class_index(name, classes, path, f" object #{k}", aliases)
        bb = obj.find("bndbox")
        if bb is None:
            raise DataError(f"{path}: <object> #{k} ({name}) has no <bndbox>.")
        vals = [bb.findtext(t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None for v in vals):
            raise DataError(f"{path}: <object> #{k} ({name}) lacks one of xmin/ymin/xmax/ymax.")
        x1, y1, x2, y2 = _numbers(vals, path, 0, "xmin ymin xmax ymax")
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true")
        rows.append((label, x1, y1, x2, y2, difficult))
    return RawBoxes.from_rows(rows), size


def parse_kaist(
    path: str | Path,
    setting: str = "reasonable",
    min_height: float = 50.0,
) -> RawBoxes:
    """KAIST bbGt version 3 txt (original and improved / sanitized annotations alike).

    First line ``% bbGt version=3``; then ``label x y w h occ xv yv wv hv ign ang`` per object. Only ``person``
    is a class (label 0); ``people``, ``person?`` and ``cyclist`` become ignore regions, as does any object with
    ``ign`` = 1. The ``"reasonable"`` setting also ignores people shorter than ``min_height`` pixels or heavily
    occluded (``occ`` = 2; 0 none, 1 partial); ``"all"`` keeps every ``person`` box as a target.

    Args:
        path: the annotation txt file.
        setting: ``"reasonable"`` or ``"all"``.
        min_height: height threshold of the reasonable setting (KAIST's paper uses 55 px for its "reasonable"
            subset; 50 is the Caltech value most multispectral papers quote).
    """
    if setting not in KAIST_SETTINGS:
        raise ConfigError(f"kaist_setting must be one of {KAIST_SETTINGS}, got {setting!r}.")
    rows = []
    for lineno, line in enumerate(_read_text(path, "KAIST annotation").splitlines(), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("%"):
            continue
        if len(tokens) < 5:
            raise DataError(f"{path} line {lineno}: expected 'label x y w h occ xv yv wv hv ign ang', got {line!r}.")
        label = tokens[0]
        if label not in KAIST_LABELS:
            raise unknown_class_error("KAIST label", label, path, KAIST_LABELS, f" line {lineno}")
        nums = _numbers(tokens[1:], path, lineno, "label x y w h occ xv yv wv hv ign ang")
        x, y, w, h = nums[:4]
        occ = int(nums[4]) if len(nums) > 4 else 0
        ign = bool(nums[9]) if len(nums) > 9 else False
        ignore = label != "person" or ign
        if setting == "reasonable" and (h < min_height or occ >= 2):
            ignore = True
        rows.append((0, x, y, x + w, y + h, ignore))
    return RawBoxes.from_rows(rows)


@dataclass
class CocoImage:
    """One image entry of a COCO json with its boxes."""

    image_id: int
    file_name: str
    size: tuple[int, int] | None  # (H, W)
    boxes: RawBoxes


def parse_coco(path: str | Path, classes: Sequence[str], aliases: Mapping[str, str] | None = None
               ) -> list[CocoImage]:
    """COCO detection json: images, annotations (``bbox`` = x, y, w, h in pixels; ``iscrowd`` -> ignore), categories.

    Categories are matched to ``classes`` by name (case-insensitive, after ``aliases``), so any category id numbering
    works. A category that no annotation uses may be unknown; one that is used must be known.
    """
    try:
        data = json.loads(_read_text(path, "COCO json"))
    except json.JSONDecodeError as exc:
        raise DataError(f"Cannot parse COCO json {path}: {exc}.") from exc
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: not a COCO detection file (no {key!r} list).")
    cat_names = {c["id"]: str(c.get("name", c["id"])) for c in data["categories"]}
    used = {a.get("category_id") for a in data["annotations"]}
    cat_to_label: dict[Any, int] = {}
    for cid in used:
        if cid not in cat_names:
            raise DataError(f"{path}: annotations use category_id {cid!r}, absent from 'categories'.")
        cat_to_label[cid] = class_index(cat_names[cid], classes, path, f" category {cid}", aliases)
    rows: dict[Any, list] = {}
    for k, a in enumerate(data["annotations"]):
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            iid = a["image_id"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: annotation #{k} lacks a 4-number 'bbox' or an 'image_id'.") from None
        rows.setdefault(iid, []).append((cat_to_label[a.get("category_id")], x, y, x + w, y + h,
                                         bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0))))
    out = []
    for img in data["images"]:
        h, w = img.get("height"), img.get("width")
        size = (int(h), int(w)) if h and w else None
        out.append(CocoImage(int(img["id"]), str(img["file_name"]), size, RawBoxes.from_rows(rows.get(img["id"], []))))
    return out
