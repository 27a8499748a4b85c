"""Detection dataset layouts and the registry behind :func:`build_det_dataset`.

Pairs are matched by file stem across the VIS and IR folders. Roots always come from the caller. Dataset terms
(research / non-commercial use; cite the authors): M3FD (TarDAL, no licence statement: research only), LLVIP
(non-commercial only, cite Jia et al. 2021), FLIR ADAS (FLIR terms restrict redistribution), KAIST (CC BY-NC-SA 4.0),
MSRS (no licence file, cite PIAFusion and MFNet; the detection labels are a third-party annotation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...data.layout import IMAGE_EXTS, index_dir, read_classes_file, read_split_file, require_dir
from ...data.pairs import condition_from_name
from ...data.registry import DatasetEntry, build_from_registry
from ...data.scenes import SYNTHETIC_CLASSES, SceneImages, SyntheticScenes
from ...errors import ConfigError, DataError
from .dataset import DetRecord, DetTransform, PairedDetDataset, sanitize_boxes
from .formats import KAIST_SETTINGS, RawBoxes, parse_coco, parse_kaist, parse_pixel_boxes, parse_voc, parse_yolo
from .kaist import DEFAULT_PROTOCOL, MissRateProtocol, get_protocol
from .kaist_files import kaist_condition

M3FD_CLASSES = ("People", "Car", "Bus", "Motorcycle", "Lamp", "Truck")
FLIR_CLASSES = ("person", "car", "bicycle")
LLVIP_CLASSES = ("person",)
KAIST_CLASSES = ("person",)
MSRS_DET_CLASSES = ("person", "bicycle", "car")
SYNTHETIC_DET_CLASSES = ("person", "car", "bike")
# synthetic scene class id (SYNTHETIC_CLASSES index) -> detection label
SYNTHETIC_ID_MAP = {SYNTHETIC_CLASSES.index(n): k for k, n in enumerate(SYNTHETIC_DET_CLASSES)}


def _pairs_from_dirs(vis_dir: Path, ir_dir: Path, stems: Sequence[str] | None = None
                     ) -> list[tuple[str, str, str]]:
    """``(stem, vis_path, ir_path)`` for ``stems`` (default: the union of both folders); a missing partner gets an
    expected path with the extension of the file that exists, so strict mode names it."""
    vis, ir = index_dir(vis_dir), index_dir(ir_dir)
    names = sorted(set(vis) | set(ir)) if stems is None else list(stems)
    out = []
    for s in names:
        ext = (vis.get(s) or ir.get(s) or Path("x.png")).suffix
        out.append((s, str(vis.get(s, vis_dir / f"{s}{ext}")), str(ir.get(s, ir_dir / f"{s}{ext}"))))
    return out


def _first_dir(base: Path, names: Sequence[str], what: str) -> Path:
    for n in names:
        if (base / n).is_dir():
            return base / n
    return require_dir(base / names[0], f"{what} (tried {', '.join(names)})")


def _lazy(parser: Callable[[str], RawBoxes]) -> Callable[[DetRecord], RawBoxes]:
    return lambda rec: parser(rec.ann_path)


def _label_files(lab_dir: Path, *image_dirs: Path) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """``stem -> file`` of the txt label files in ``lab_dir`` (``.txt`` in any case: ``A.TXT`` is ``A``'s label),
    and ``(path, why)`` for those whose stem no image in ``image_dirs`` has (the dataset reports them as unused).

    An image without a label file is a negative; two label files for one stem (``a.txt`` and ``a.TXT``) are an
    error, since which one is meant cannot be guessed.
    """
    found: dict[str, str] = {}
    for p in sorted(lab_dir.iterdir()) if lab_dir.is_dir() else []:
        if p.is_file() and p.suffix.lower() == ".txt":
            if p.stem in found:
                raise DataError(f"Two label files share the stem {p.stem!r} in {lab_dir}: {Path(found[p.stem]).name} "
                                f"and {p.name}. Keep one of them.")
            found[p.stem] = str(p)
    stems = set().union(*(index_dir(d) for d in image_dirs))
    unused = [(path, "label file of no image (no visible or infrared image has this name); not used")
              for stem, path in sorted(found.items()) if stem not in stems and stem != "classes"]
    return found, unused


def _with_unused(ds: PairedDetDataset, unused: list[tuple[str, str]]) -> PairedDetDataset:
    ds.unused_inputs += unused
    return ds


def _check_class_names(names: Sequence[str], where: str) -> None:
    """A class list must name each class once (two classes of one name cannot both be meant)."""
    lowered = [n.strip().lower() for n in names]
    dup = sorted({n for n in names if lowered.count(n.strip().lower()) > 1})
    if dup or any(not n for n in lowered):
        what = f"names {dup} more than once" if dup else "an empty name"
        raise DataError(f"{where} lists {what}: {list(names)}. Give each class one distinct name.")


def _missing_ann_ok(parser: Callable[[str], RawBoxes]) -> Callable[[DetRecord], RawBoxes]:
    """YOLO / txt layouts: an image without a label file is a negative (the usual YOLO convention)."""
    def read(rec: DetRecord) -> RawBoxes:
        if rec.ann_path is None or not Path(rec.ann_path).exists():
            return RawBoxes()
        return parser(rec.ann_path)
    return read


def _coco_records(images_vis: Callable[[str], tuple[str, str, str]], json_path: Path, classes: Sequence[str],
                  aliases: dict[str, str] | None = None, unused: list[tuple[str, str]] | None = None
                  ) -> list[DetRecord]:
    """Records from a COCO json; ``images_vis(file_name) -> (name, vis_path, ir_path)``.

    ``unused`` gets what the json holds that no record uses: annotations of images not in ``images``, and the
    second entries of pairs listed twice (FLIR-style files list both images of a pair; the first entry is kept).
    """
    out = []
    seen: dict[str, int] = {}
    notes: list[tuple[str, str]] = []
    repeated, repeated_boxes = [], 0
    for img in parse_coco(json_path, classes, aliases, notes):
        name, vis, ir = images_vis(img.file_name)
        if name in seen:
            repeated.append(img.file_name)
            repeated_boxes += len(img.boxes)
            continue
        seen[name] = img.image_id
        out.append(DetRecord(name, vis, ir, str(json_path), condition_from_name(name, {}), img.image_id, img.size,
                             img.boxes))
    if repeated:
        notes.append((str(json_path), f"{len(repeated)} image entr{'y' if len(repeated) == 1 else 'ies'} name a pair "
                      f"already listed (e.g. {repeated[0]}); the first entry of each pair is used, the "
                      f"{repeated_boxes} box(es) of the repeated entries are not"))
    if unused is not None:
        unused += notes
    elif notes:
        raise DataError(f"{json_path}: " + "; ".join(why for _, why in notes))
    return out


def _find_image(folder: Path, stem: str, index: dict[str, Path] | None = None) -> str:
    if index is not None and stem in index:
        return str(index[stem])
    for ext in IMAGE_EXTS:
        if (folder / f"{stem}{ext}").is_file():
            return str(folder / f"{stem}{ext}")
    return str(folder / f"{stem}.png")


# ---------------------------------------------------------------------------------------------------------- M3FD
def build_m3fd(root: Path, split: str, transform: DetTransform | None = None, *, strict: bool = True,
               format: str = "yolo", ann_file: str | None = None, ir_high_depth: str = "minmax") -> PairedDetDataset:
    """M3FD (TarDAL, CVPR 2022), 6 classes People, Car, Bus, Motorcycle, Lamp, Truck.

    ``format="yolo"`` (TarDAL's release): ``root/{vi, ir, labels}`` with YOLO txt (class ids in the order above) and a
    split file ``root/{split}.txt`` or ``root/meta/{split}.txt`` listing stems; split ``all`` takes every image.
    ``format="coco"`` (the authors' files): ``root/{split}/{vi, ir}`` + ``root/annotations/{split}.json`` (or
    ``ann_file``, relative to ``root``); categories matched by name.
    """
    if format == "yolo":
        vis_dir = require_dir(root / "vi", "M3FD visible")
        ir_dir = require_dir(root / "ir", "M3FD infrared")
        lab_dir = require_dir(root / "labels", "M3FD labels")
        stems = None
        if split != "all":
            cand = [root / f"{split}.txt", root / "meta" / f"{split}.txt"]
            split_file = next((p for p in cand if p.is_file()), None)
            if split_file is None:
                raise DataError(f"M3FD has no official split and {cand[0]} does not exist. Write the seeded 80/20 "
                                f"split files once with: ivtune data split {root} --dataset m3fd (or use split "
                                "'all').")
            stems = read_split_file(split_file)
        labels, unused = _label_files(lab_dir, vis_dir, ir_dir)
        records = [DetRecord(s, v, i, labels.get(s)) for s, v, i in _pairs_from_dirs(vis_dir, ir_dir, stems)]
        return _with_unused(PairedDetDataset(records, M3FD_CLASSES, transform, strict, f"m3fd/{split}",
                                             _missing_ann_ok(lambda p: parse_yolo(p, M3FD_CLASSES)), ir_high_depth),
                            unused)
    if format == "coco":
        base = require_dir(root / split, f"M3FD split {split!r}")
        vis_dir, ir_dir = require_dir(base / "vi", "M3FD visible"), require_dir(base / "ir", "M3FD infrared")
        vi_idx, ir_idx = index_dir(vis_dir), index_dir(ir_dir)
        json_path = root / (ann_file or f"annotations/{split}.json")

        def paths(file_name: str) -> tuple[str, str, str]:
            stem = Path(file_name).stem
            return stem, _find_image(vis_dir, stem, vi_idx), _find_image(ir_dir, stem, ir_idx)

        unused: list[tuple[str, str]] = []
        return _with_unused(PairedDetDataset(_coco_records(paths, json_path, M3FD_CLASSES, unused=unused),
                                             M3FD_CLASSES, transform, strict, f"m3fd/{split}",
                                             ir_high_depth=ir_high_depth), unused)
    raise ConfigError(f"m3fd format must be 'yolo' or 'coco', got {format!r}.")


# ---------------------------------------------------------------------------------------------------------- LLVIP
def build_llvip(root: Path, split: str, transform: DetTransform | None = None, *, strict: bool = True,
                format: str = "voc", ann_file: str | None = None, ir_high_depth: str = "minmax") -> PairedDetDataset:
    """LLVIP (ICCVW 2021), 1 class person: ``root/{visible, infrared}/{train, test}/NAME.jpg``.

    ``format="voc"`` (official): ``root/Annotations/NAME.xml``. ``format="coco"``: ``root/annotations/{split}.json``
    (or ``ann_file``). All LLVIP pairs are night scenes (condition ``night``).
    """
    vis_dir = require_dir(root / "visible" / split, f"LLVIP visible {split!r}")
    ir_dir = require_dir(root / "infrared" / split, f"LLVIP infrared {split!r}")
    if format == "voc":
        ann_dir = _first_dir(root, ("Annotations", "annotations"), "LLVIP annotations")
        records = [DetRecord(s, v, i, str(ann_dir / f"{s}.xml"), "night")
                   for s, v, i in _pairs_from_dirs(vis_dir, ir_dir)]

        def read(rec: DetRecord) -> RawBoxes:
            return parse_voc(rec.ann_path, LLVIP_CLASSES)[0]

        return PairedDetDataset(records, LLVIP_CLASSES, transform, strict, f"llvip/{split}", read, ir_high_depth)
    if format == "coco":
        vi_idx, ir_idx = index_dir(vis_dir), index_dir(ir_dir)

        def paths(file_name: str) -> tuple[str, str, str]:
            stem = Path(file_name).stem
            return stem, _find_image(vis_dir, stem, vi_idx), _find_image(ir_dir, stem, ir_idx)

        unused: list[tuple[str, str]] = []
        recs = [DetRecord(r.name, r.vis_path, r.ir_path, r.ann_path, "night", r.image_id, r.size, r.boxes)
                for r in _coco_records(paths, root / (ann_file or f"annotations/{split}.json"), LLVIP_CLASSES,
                                       unused=unused)]
        return _with_unused(PairedDetDataset(recs, LLVIP_CLASSES, transform, strict, f"llvip/{split}",
                                             ir_high_depth=ir_high_depth), unused)
    raise ConfigError(f"llvip format must be 'voc' or 'coco', got {format!r}.")


# ---------------------------------------------------------------------------------------------------------- FLIR
FLIR_VIS_SUFFIX, FLIR_IR_SUFFIX = "_RGB", "_PreviewData"
_FLIR_SUFFIX = re.compile(r"(_RGB|_PreviewData)$", re.IGNORECASE)


def flir_key(file_name: str) -> str:
    """Pair key of a FLIR-aligned file: the stem without ``_RGB`` / ``_PreviewData`` (``FLIR_00002``)."""
    return _FLIR_SUFFIX.sub("", Path(file_name).stem)


def build_flir_aligned(root: Path, split: str, transform: DetTransform | None = None, *, strict: bool = True,
                       ann_file: str | None = None, image_dir: str | None = None, ir_high_depth: str = "minmax"
                       ) -> PairedDetDataset:
    """FLIR-aligned (Zhang et al. 2020), 3 classes person, car, bicycle.

    Images: ``root/JPEGImages`` (or ``image_dir``, else ``root/{split}``) holding ``KEY_RGB.jpg`` (visible) and
    ``KEY_PreviewData.jpeg`` (thermal) files. Annotations: COCO json, first found of ``ann_file``,
    ``root/annotations/{split}.json``, ``root/Annotation_{split}.json``, ``root/{split}.json``.

    Stem-matching rule: the json's ``file_name`` (either image of the pair, or the bare key) is reduced to its key by
    dropping a trailing ``_RGB`` / ``_PreviewData`` from the stem; the pair is ``KEY_RGB.*`` + ``KEY_PreviewData.*``
    in the image folder, any image extension. The boxes are taken as given (the aligned set annotates the thermal
    frame, to which the visible frame is registered).
    """
    if image_dir is not None:
        img_dir = require_dir(root / image_dir, "FLIR image")
    else:
        img_dir = _first_dir(root, ("JPEGImages", split), "FLIR image")
    if ann_file is not None:
        json_path = root / ann_file
    else:
        cand = [root / "annotations" / f"{split}.json", root / f"Annotation_{split}.json", root / f"{split}.json"]
        json_path = next((p for p in cand if p.is_file()), cand[0])
    idx = index_dir(img_dir)

    def paths(file_name: str) -> tuple[str, str, str]:
        key = flir_key(file_name)
        return (key, _find_image(img_dir, key + FLIR_VIS_SUFFIX, idx), _find_image(img_dir, key + FLIR_IR_SUFFIX, idx))

    unused: list[tuple[str, str]] = []
    return _with_unused(PairedDetDataset(_coco_records(paths, json_path, FLIR_CLASSES, unused=unused), FLIR_CLASSES,
                                         transform, strict, f"flir_aligned/{split}", ir_high_depth=ir_high_depth),
                        unused)


# ---------------------------------------------------------------------------------------------------------- KAIST
def _kept_boxes(raw: RawBoxes, size: tuple[int, int] | None) -> np.ndarray:
    """Indices into ``raw`` of the boxes :func:`sanitize_boxes` keeps (it drops zero-area ones), in order."""
    index = RawBoxes(raw.xyxy, np.arange(len(raw), dtype=np.int64), raw.ignore, raw.normalized)
    return sanitize_boxes(index, size).labels  # the labels carried through are the row indices


class KaistDetDataset(PairedDetDataset):
    """KAIST pairs; :meth:`to_coco` also carries what the miss-rate protocol needs (docs/METHOD.md section 9.4).

    Attributes:
        protocol: the evaluation protocol (``data.kaist_protocol``), a :class:`ivtune.tasks.det.kaist.MissRateProtocol`.
    """

    def __init__(self, records: Sequence[DetRecord], transform: DetTransform | None, strict: bool, name: str,
                 read_annotation: Callable[[DetRecord], RawBoxes], ir_high_depth: str,
                 protocol: MissRateProtocol) -> None:
        self.protocol = protocol
        super().__init__(records, KAIST_CLASSES, transform, strict, name, read_annotation, ir_high_depth)

    def to_coco(self) -> dict[str, Any]:
        """:meth:`PairedDetDataset.to_coco` (``iscrowd`` = the training ignore regions, for COCO AP) plus, per
        annotation, the raw KAIST facts: ``kaist_category`` (person, people, person?, cyclist), ``height`` (as
        annotated), ``occlusion`` (0 / 1 / 2) and ``kaist_ignore`` (the file's ``ign`` flag); and at the top
        ``miss_rate_protocol`` (the protocol's name). The boxes are the clipped ones training sees; clipping never
        changes a kaist-* decision (a box reaching past the image also crosses the 5 px border)."""
        coco = super().to_coco()
        anns: dict[int, list[dict[str, Any]]] = {}
        for a in coco["annotations"]:
            anns.setdefault(a["image_id"], []).append(a)
        for i, rec in enumerate(self.records):
            raw = self.raw_annotation(i)
            for a, k in zip(anns.get(rec.image_id, []), _kept_boxes(raw, self.annotation(i).size).tolist(),
                            strict=True):
                a.update(kaist_category=str(raw.categories[k]), height=float(raw.heights[k]),
                         occlusion=int(raw.occlusion[k]), kaist_ignore=int(raw.flagged[k]))
        coco["miss_rate_protocol"] = self.protocol.name
        return coco


def build_kaist(root: Path, split: str, transform: DetTransform | None = None, *, strict: bool = True,
                list_file: str | None = None, ann_dir: str = "annotations", kaist_protocol: str = DEFAULT_PROTOCOL,
                kaist_setting: str = "reasonable", kaist_min_height: float | None = None,
                ir_high_depth: str = "minmax") -> KaistDetDataset:
    """KAIST multispectral pedestrians (CVPR 2015), 1 class person.

    Images ``root/setXX/VYYY/{visible, lwir}/IZZZZZ.jpg``; the split is a list file (``list_file``, else
    ``root/{split}.txt`` or ``root/imageSets/{split}.txt``) of relative stems such as ``set06/V000/I00019`` or
    ``set06_V000_I00019``. Annotations (bbGt v3 txt, original or improved / sanitized) at
    ``root/{ann_dir}/setXX/VYYY/IZZZZZ.txt`` or flattened ``root/{ann_dir}/setXX_VYYY_IZZZZZ.txt``.

    Args:
        kaist_protocol: the miss-rate protocol of evaluation (``kaist-reasonable``, ``kaist-all``,
            ``caltech-reasonable``; docs/METHOD.md section 9.4), applied to the raw annotations at evaluation.
        kaist_setting: training ignore regions: ``reasonable`` = every box that is not a target of
            ``kaist_protocol``; ``all`` = only people / person? / cyclist and ``ign`` boxes (see
            :func:`ivtune.tasks.det.formats.parse_kaist`).
        kaist_min_height: overrides the protocol's height threshold in the training rule only (None: the
            protocol's; earlier ivtune versions used 50).
    """
    protocol = get_protocol(kaist_protocol)
    if kaist_setting not in KAIST_SETTINGS:
        raise ConfigError(f"kaist_setting must be one of {KAIST_SETTINGS}, got {kaist_setting!r}.")
    if list_file is not None:
        lf = root / list_file
    else:
        cand = [root / f"{split}.txt", root / "imageSets" / f"{split}.txt"]
        lf = next((p for p in cand if p.is_file()), cand[0])
    ann_base = root / ann_dir
    records = []
    for line in read_split_file(lf):
        parts = [p for p in re.split(r"[/\\_]", line) if p]
        if len(parts) != 3:
            raise DataError(f"{lf}: cannot read {line!r} as setXX/VYYY/IZZZZZ (or setXX_VYYY_IZZZZZ).")
        s, v, frame = parts
        name = f"{s}_{v}_{frame}"
        seq = root / s / v
        nested, flat = ann_base / s / v / f"{frame}.txt", ann_base / f"{name}.txt"
        ann = nested if nested.is_file() or not flat.is_file() else flat
        records.append(DetRecord(name, _find_image(seq / "visible", frame), _find_image(seq / "lwir", frame),
                                 str(ann), kaist_condition(name)))
    read = _lazy(lambda p: parse_kaist(p, kaist_setting, kaist_min_height, protocol))
    return KaistDetDataset(records, transform, strict, f"kaist/{split}", read, ir_high_depth, protocol)


# ---------------------------------------------------------------------------------------------------------- MSRS
MSRS_ANNOTATIONS = ("fusion", "visible", "infrared")


def build_msrs_det(root: Path, split: str, transform: DetTransform | None = None, *, strict: bool = True,
                   annotation: str = "fusion", ir_high_depth: str = "minmax") -> PairedDetDataset:
    """MSRS with detection labels (Lele-3/MSRS-detection-label), 3 classes person, bicycle, car.

    ``root/{vis, ir, labels/{visible, infrared, fusion}}`` + ``classes.txt`` (split ``all``: the flat folder), or the
    same under ``root/{split}/``. ``annotation`` picks which of the three YOLO label sets to read (default fusion).
    Names end in ``D`` / ``N`` (day / night).
    """
    if annotation not in MSRS_ANNOTATIONS:
        raise ConfigError(f"msrs_det annotation must be one of {MSRS_ANNOTATIONS}, got {annotation!r}.")
    base = require_dir(root, "msrs_det root") if split == "all" else require_dir(root / split, f"msrs_det {split!r}")
    vis_dir, ir_dir = require_dir(base / "vis", "msrs_det visible"), require_dir(base / "ir", "msrs_det infrared")
    lab_dir = require_dir(base / "labels" / annotation, f"msrs_det {annotation} labels")
    cfile = next((p for p in (base / "classes.txt", root / "classes.txt") if p.is_file()), None)
    classes = tuple(read_classes_file(cfile)) if cfile is not None else MSRS_DET_CLASSES
    _check_class_names(classes, str(cfile or "the msrs_det class list"))
    labels, unused = _label_files(lab_dir, vis_dir, ir_dir)
    records = [DetRecord(s, v, i, labels.get(s), condition_from_name(s))
               for s, v, i in _pairs_from_dirs(vis_dir, ir_dir)]
    return _with_unused(PairedDetDataset(records, classes, transform, strict, f"msrs_det/{split}/{annotation}",
                                         _missing_ann_ok(lambda p: parse_yolo(p, classes)), ir_high_depth), unused)


# ---------------------------------------------------------------------------------------------------------- folders
def build_folders(root: Path, split: str, transform: DetTransform | None = None, *, strict: bool = True,
                  classes: Sequence[str] | None = None, vis_dir: str = "vis", ir_dir: str = "ir",
                  box_dir: str = "boxes", ir_high_depth: str = "minmax") -> PairedDetDataset:
    """``root/{split}/{vis, ir, boxes}`` with ``class_id x1 y1 x2 y2`` pixel lines and ``root/classes.txt``.

    File class ids index ``classes.txt``; the dataset's classes are ``classes`` (names, in label order; default all
    of ``classes.txt``, or person / car / bike when ``root/synthetic.json`` shows a tree written by
    :func:`ivtune.data.write_synthetic_dataset`, matching the ``synthetic`` dataset). A file id whose name is not in
    ``classes`` is an unknown class. An image without a box file is a negative.
    """
    root = require_dir(Path(root), "folders root")
    splits = sorted(p.name for p in root.iterdir() if (p / vis_dir).is_dir())
    if split not in splits:
        raise ConfigError(f"Split {split!r} not found under {root}; splits there: {', '.join(splits) or '(none)'}.")
    cpath = root / "classes.txt"
    if not cpath.is_file():
        raise DataError(f"No class list: write {cpath} (one 'index name' per line, class 0 first).")
    file_classes = read_classes_file(cpath)
    _check_class_names(file_classes, str(cpath))
    if classes is None:
        classes = SYNTHETIC_DET_CLASSES if (root / "synthetic.json").is_file() else tuple(file_classes)
    classes = tuple(classes)
    _check_class_names(classes, "data.classes")
    if absent := [n for n in classes if n not in file_classes]:
        raise ConfigError(f"data.classes names {absent}, which {cpath} does not list ({', '.join(file_classes)}): "
                          "no box could ever have that class. Use names from the file.")
    id_map = {k: classes.index(n) for k, n in enumerate(file_classes) if n in classes}
    base = root / split
    bdir = base / box_dir
    vdir, idir = require_dir(base / vis_dir, "folders visible"), require_dir(base / ir_dir, "folders infrared")
    labels, unused = _label_files(bdir, vdir, idir)
    records = [DetRecord(s, v, i, labels.get(s), condition_from_name(s)) for s, v, i in _pairs_from_dirs(vdir, idir)]
    return _with_unused(PairedDetDataset(records, classes, transform, strict, f"folders/{split}",
                                         _missing_ann_ok(lambda p: parse_pixel_boxes(p, classes, id_map)),
                                         ir_high_depth), unused)


# ---------------------------------------------------------------------------------------------------------- synthetic
class SyntheticDetDataset(SceneImages, PairedDetDataset):
    """In-memory synthetic scenes (:func:`ivtune.data.make_scene`) with boxes person / car / bike = 0 / 1 / 2.

    Item ``i`` is generated from ``(seed, split, i)`` alone (the scenes of :class:`ivtune.data.scenes.SyntheticScenes`).
    """

    def __init__(self, num_samples: int, seed: int = 0, height: int = 256, width: int = 320,
                 night_fraction: float = 0.5, transform: DetTransform | None = None, split: str = "train"):
        self.scenes = SyntheticScenes(num_samples, seed, height, width, night_fraction, 0.0, split=split)
        records = [DetRecord(r.name, r.vis_path, r.ir_path, None, r.condition, k + 1, (int(height), int(width)))
                   for k, r in enumerate(self.scenes.records)]
        super().__init__(records, SYNTHETIC_DET_CLASSES, transform, True, f"synthetic/{split}", eager=False)

    def raw_annotation(self, index: int) -> RawBoxes:
        rows = [(SYNTHETIC_ID_MAP[c], x1, y1, x2, y2, False) for c, x1, y1, x2, y2 in self.scenes.scene(index).boxes
                if c in SYNTHETIC_ID_MAP]
        return RawBoxes.from_rows(rows)


SYNTHETIC_SIZES = {"train": 400, "val": 100, "test": 100}


def build_synthetic(root: Path | None, split: str, transform: DetTransform | None = None, *, strict: bool = True,
                    num_samples: int | None = None, seed: int = 0, height: int = 256, width: int = 320,
                    night_fraction: float = 0.5) -> SyntheticDetDataset:
    """Synthetic split (``root`` ignored); ``num_samples`` defaults to 400 / 100 / 100 for train / val / test."""
    n = SYNTHETIC_SIZES[split] if num_samples is None else int(num_samples)
    return SyntheticDetDataset(n, seed, height, width, night_fraction, transform, split)


# ---------------------------------------------------------------------------------------------------------- registry
DET_DATASETS: dict[str, DatasetEntry] = {
    "m3fd": DatasetEntry(build_m3fd, ("train", "val", "test", "all"), M3FD_CLASSES),
    "llvip": DatasetEntry(build_llvip, ("train", "test"), LLVIP_CLASSES),
    "flir_aligned": DatasetEntry(build_flir_aligned, ("train", "test", "val"), FLIR_CLASSES),
    "kaist": DatasetEntry(build_kaist, ("train", "test"), KAIST_CLASSES),
    "msrs_det": DatasetEntry(build_msrs_det, None, MSRS_DET_CLASSES),
    "folders": DatasetEntry(build_folders, None, None),
    "synthetic": DatasetEntry(build_synthetic, ("train", "val", "test"), SYNTHETIC_DET_CLASSES, needs_root=False),
}


def build_det_dataset(name: str, root: str | Path | None, split: str, transform: DetTransform | None = None, *,
                      strict: bool = True, **options: Any) -> PairedDetDataset:
    """Build a paired detection dataset by name.

    Args:
        name: a key of :data:`DET_DATASETS` (case-insensitive): m3fd, llvip, flir_aligned, kaist, msrs_det, folders,
            synthetic.
        root: the dataset folder; None for ``synthetic``.
        split: a split of that dataset; ``msrs_det`` uses ``all`` for a flat folder.
        transform: e.g. :func:`ivtune.data.det.build_det_transforms`; None gives [0, 1] tensors.
        strict: raise at construction listing every missing file and any bad annotation.
        **options: per-dataset options (``format``, ``ann_file``, ``annotation``, ``kaist_protocol``, ``classes``,
            ``num_samples`` ...); unknown ones are a ConfigError listing the accepted ones.

    Raises:
        ConfigError: unknown name, split or option, or a missing root.
        DataError: missing folders or files, unknown classes, unreadable annotations.
    """
    return build_from_registry(DET_DATASETS, "detection", name, root, split, transform, strict=strict, **options)


__all__ = ["DET_DATASETS", "KaistDetDataset", "SyntheticDetDataset", "build_det_dataset", "flir_key",
           "kaist_condition"]
