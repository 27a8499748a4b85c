"""Box annotation parsers: COCO json, Pascal VOC xml, YOLO txt, KAIST bbGt v3 txt, pixel ``class x1 y1 x2 y2`` txt.

Every parser returns :class:`RawBoxes` (xyxy, 0-based labels, ignore flags), the one internal representation (KAIST:
:class:`KaistBoxes`, which also keeps each box's raw label, height and occlusion for the miss-rate protocol); pixel
conversion, clipping and dropping happen in :class:`ivtune.data.det.dataset.PairedDetDataset`. A class the dataset
does not know is a :class:`ivtune.errors.DataError` that names the file and lists the known classes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError, DataError
from .kaist import DEFAULT_PROTOCOL, MissRateProtocol, apply_protocol, get_protocol

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


def _token_lines(path: str | Path, what: str, comment: str | None = None) -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, line, whitespace-split tokens)`` of every line of a text label file that holds tokens
    (blank lines and, with ``comment``, lines whose first token starts with it are skipped)."""
    for lineno, line in enumerate(_read_text(path, what).splitlines(), 1):
        tokens = line.split()
        if tokens and not (comment is not None and tokens[0].startswith(comment)):
            yield lineno, line, tokens


def _numbers(tokens: Sequence[str], path: str | Path, lineno: int | str, fmt: str) -> list[float]:
    """Finite floats from ``tokens``; ``lineno`` is a line number or, for xml, where in the file (``object #2``)."""
    where = f"line {lineno}" if isinstance(lineno, int) else lineno
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise DataError(f"{path} {where}: expected numbers in {fmt!r}, got {' '.join(tokens)!r}.") from None
    if not all(math.isfinite(v) for v in values):
        raise DataError(f"{path} {where}: non-finite number in {fmt!r}: {' '.join(tokens)!r}.")
    return values


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
    for lineno, line, tokens in _token_lines(path, "YOLO label file"):
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
    for lineno, line, tokens in _token_lines(path, "box file"):
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
        x1, y1, x2, y2 = _numbers(vals, path, f"<object> #{k} ({name}) <bndbox>", "xmin ymin xmax ymax")
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true")
        rows.append((label, x1, y1, x2, y2, difficult))
    return RawBoxes.from_rows(rows), size


@dataclass(eq=False)
class KaistBoxes(RawBoxes):
    """KAIST boxes with the raw per-box facts an evaluation protocol decides on (docs/METHOD.md section 9.4).

    ``ignore`` is the *training* rule (``kaist_setting``); evaluation re-applies the named protocol to these raw
    attributes instead, so the miss rate never depends on what training ignored.

    Attributes:
        categories: ``(N,)`` KAIST label per box: ``person``, ``people``, ``person?`` or ``cyclist``.
        heights: ``(N,)`` box height in pixels as annotated (before any clipping to the image).
        occlusion: ``(N,)`` occlusion level, 0 none, 1 partial, 2 heavy.
        flagged: ``(N,)`` the annotation's own ``ign`` flag.
    """

    categories: np.ndarray = field(default_factory=lambda: np.zeros((0,), object))
    heights: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float64))
    occlusion: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    flagged: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))


def parse_kaist(
    path: str | Path,
    setting: str = "reasonable",
    min_height: float | None = None,
    protocol: str | MissRateProtocol = DEFAULT_PROTOCOL,
) -> KaistBoxes:
    """KAIST bbGt version 3 txt (original and improved / sanitized annotations alike).

    First line ``% bbGt version=3``; then ``label x y w h occ xv yv wv hv ign ang`` per object. Only ``person``
    is a class (label 0); the raw label, height, occlusion and ``ign`` flag of every box are kept
    (:class:`KaistBoxes`) for the evaluation protocol. The training ignore regions (``ignore``):

    - ``"reasonable"``: every box that is not a target of ``protocol`` (``kaist-reasonable``: people, person?,
      cyclist, ``ign`` = 1, shorter than 55 px, heavily occluded, crossing the 640x512 frame's 5 px border), so
      training and evaluation agree on what a pedestrian is;
    - ``"all"``: only ``people``, ``person?``, ``cyclist`` and ``ign`` = 1 boxes; every other person is a target.

    Args:
        path: the annotation txt file.
        setting: ``"reasonable"`` or ``"all"``.
        min_height: overrides the protocol's height threshold for the training rule only (None: the protocol's).
        protocol: a name in :data:`ivtune.tasks.det.kaist.PROTOCOLS` or a protocol.
    """
    if setting not in KAIST_SETTINGS:
        raise ConfigError(f"kaist_setting must be one of {KAIST_SETTINGS}, got {setting!r}.")
    proto = get_protocol(protocol)
    if min_height is not None:
        proto = dataclasses.replace(proto, min_height=float(min_height))
    rows, facts = [], []
    for lineno, line, tokens in _token_lines(path, "KAIST annotation", comment="%"):
        if len(tokens) < 5:
            raise DataError(f"{path} line {lineno}: expected 'label x y w h occ xv yv wv hv ign ang', got {line!r}.")
        label = tokens[0]
        if label not in KAIST_LABELS:
            raise unknown_class_error("KAIST label", label, path, KAIST_LABELS, f" line {lineno}")
        nums = _numbers(tokens[1:], path, lineno, "label x y w h occ xv yv wv hv ign ang")
        x, y, w, h = nums[:4]
        if w < 0 or h < 0:
            raise DataError(f"{path} line {lineno}: negative width or height in {line.strip()!r}; the columns are "
                            "label x y w h.")
        occ = int(nums[4]) if len(nums) > 4 else 0
        if occ not in (0, 1, 2):
            raise DataError(f"{path} line {lineno}: occlusion {nums[4]:g}; expected 0 (none), 1 (partial) or 2 "
                            "(heavy).")
        ign = bool(nums[9]) if len(nums) > 9 else False
        rows.append((0, x, y, x + w, y + h, label != "person" or ign))
        facts.append((label, h, occ, ign))
    base = RawBoxes.from_rows(rows)
    out = KaistBoxes(base.xyxy, base.labels, base.ignore, False, np.array([f[0] for f in facts], object),
                     np.array([f[1] for f in facts], np.float64), np.array([f[2] for f in facts], np.int64),
                     np.array([f[3] for f in facts], bool))
    if setting == "reasonable" and len(out):
        # the protocol's own rule 1 on the raw facts; no image size here: the protocol's frame (KAIST: 640x512)
        _, out.ignore = apply_protocol({"boxes": out.xyxy, "labels": list(out.categories), "heights": out.heights,
                                        "occlusion": out.occlusion, "ignore": out.flagged}, proto, str(path))
    return out


@dataclass
class CocoImage:
    """One image entry of a COCO json with its boxes."""

    image_id: int
    file_name: str
    size: tuple[int, int] | None  # (H, W)
    boxes: RawBoxes


def parse_coco(path: str | Path, classes: Sequence[str], aliases: Mapping[str, str] | None = None,
               unused: list[tuple[str, str]] | None = None) -> list[CocoImage]:
    """COCO detection json: images, annotations (``bbox`` = x, y, w, h in pixels; ``iscrowd`` -> ignore), categories.

    Categories are matched to ``classes`` by name (case-insensitive, after ``aliases``), so any category id numbering
    works. A category that no annotation uses may be unknown; one that is used must be known. Every value is
    checked: an image without an ``id`` or ``file_name``, two images with one id, a non-finite or malformed box
    are errors naming the json and the entry.

    Args:
        path: the json file.
        classes: the dataset's class names.
        aliases: lower-case category name -> class name.
        unused: when given, gets ``(path, why)`` for the entries no image uses (annotations whose ``image_id`` is
            not among the images), which are left out and counted instead of failing.
    """
    try:
        data = json.loads(_read_text(path, "COCO json"))
    except json.JSONDecodeError as exc:
        raise DataError(f"Cannot parse COCO json {path}: {exc}.") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a COCO detection file (the top level is a {type(data).__name__}, not an object).")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: not a COCO detection file (no {key!r} list).")
        bad = next((k for k, e in enumerate(data[key]) if not isinstance(e, dict)), None)
        if bad is not None:
            raise DataError(f"{path}: {key}[{bad}] is a {type(data[key][bad]).__name__}, not an object.")
    cat_names = {}
    for k, c in enumerate(data["categories"]):
        if "id" not in c:
            raise DataError(f"{path}: categories[{k}] ({c.get('name', '?')}) has no 'id'.")
        cat_names[c["id"]] = str(c.get("name", c["id"]))
    images: dict[Any, dict] = {}
    for k, img in enumerate(data["images"]):
        if "id" not in img or "file_name" not in img:
            missing = " and ".join(f"'{key}'" for key in ("id", "file_name") if key not in img)
            raise DataError(f"{path}: images[{k}] ({img.get('file_name', img.get('id', '?'))}) has no {missing}; every "
                            "image entry needs an 'id' (the annotations' image_id) and a 'file_name'.")
        if img["id"] in images:
            raise DataError(f"{path}: images[{k}] ({img['file_name']}) has id {img['id']!r}, already used by "
                            f"{images[img['id']]['file_name']}; image ids must be unique.")
        images[img["id"]] = img
    used = {a.get("category_id") for a in data["annotations"]}
    cat_to_label: dict[Any, int] = {}
    for cid in used:
        if cid not in cat_names:
            raise DataError(f"{path}: annotations use category_id {cid!r}, absent from 'categories'.")
        cat_to_label[cid] = class_index(cat_names[cid], classes, path, f" category {cid}", aliases)
    rows: dict[Any, list] = {}
    orphans: dict[Any, int] = {}
    for k, a in enumerate(data["annotations"]):
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            iid = a["image_id"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: annotation #{k} lacks a 4-number 'bbox' or an 'image_id'.") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise DataError(f"{path}: annotation #{k} (image_id {iid!r}) has a non-finite bbox {a['bbox']}.")
        if iid not in images:
            orphans[iid] = orphans.get(iid, 0) + 1
            continue
        rows.setdefault(iid, []).append((cat_to_label[a.get("category_id")], x, y, x + w, y + h,
                                         bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0))))
    if orphans:
        ids = ", ".join(map(repr, sorted(orphans, key=str)[:10])) + (" ..." if len(orphans) > 10 else "")
        why = (f"{sum(orphans.values())} annotation(s) refer to image ids that are not in 'images' ({ids}); they are "
               "not used")
        if unused is None:
            raise DataError(f"{path}: {why}. Add the images or remove the annotations.")
        unused.append((str(path), why))
    out = []
    for k, img in enumerate(data["images"]):
        try:
            h, w = img.get("height"), img.get("width")
            size = (int(h), int(w)) if h and w else None
            image_id = int(img["id"])
        except (TypeError, ValueError):
            raise DataError(f"{path}: images[{k}] ({img['file_name']}) has a non-integer id, height or "
                            "width.") from None
        out.append(CocoImage(image_id, str(img["file_name"]), size, RawBoxes.from_rows(rows.get(img["id"], []))))
    return out
