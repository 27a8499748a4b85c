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

from ...data.layout import IMAGE_EXTS, index_dir, read_classes_file, read_split_file, require_dir
from ...data.pairs import condition_from_name
from ...data.registry import DatasetEntry, build_from_registry
from ...data.scenes import SYNTHETIC_CLASSES, SceneImages, SyntheticScenes
from ...errors import ConfigError, DataError
from .dataset import DetRecord, DetTransform, PairedDetDataset
from .formats import KAIST_SETTINGS, RawBoxes, parse_coco, parse_kaist, parse_pixel_boxes, parse_voc, parse_yolo

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


def _opt(path: Path) -> str | None:
    """An optional label file: its path when it exists, else None (the image is a negative)."""
    return str(path) if path.is_file() else None


def _missing_ann_ok(parser: Callable[[str], RawBoxes]) -> Callable[[DetRecord], RawBoxes]:
    """YOLO / txt layouts: an image without a label file is a negative (the usual YOLO convention)."""
    def read(rec: DetRecord) -> RawBoxes:
        if rec.ann_path is None or not Path(rec.ann_path).exists():
            return RawBoxes()
        return parser(rec.ann_path)
    return read


def _coco_records(images_vis: Callable[[str], tuple[str, str, str]], json_path: Path, classes: Sequence[str],
                  aliases: dict[str, str] | None = None) -> list[DetRecord]:
    """Records from a COCO json; ``images_vis(file_name) -> (name, vis_path, ir_path)``."""
    out = []
    seen: dict[str, int] = {}
    for img in parse_coco(json_path, classes, aliases):
        name, vis, ir = images_vis(img.file_name)
        if name in seen:
            continue  # FLIR-style json may list both images of a pair; keep the first entry
        seen[name] = img.image_id
        out.append(DetRecord(name, vis, ir, str(json_path), condition_from_name(name, {}), img.image_id, img.size,
                             img.boxes))
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
        records = [DetRecord(s, v, i, _opt(lab_dir / f"{s}.txt"))
                   for s, v, i in _pairs_from_dirs(vis_dir, ir_dir, stems)]
        return PairedDetDataset(records, M3FD_CLASSES, transform, strict, f"m3fd/{split}",
                                _missing_ann_ok(lambda p: parse_yolo(p, M3FD_CLASSES)), ir_high_depth)
    if format == "coco":
        base = require_dir(root / split, f"M3FD split {split!r}")
        vis_dir, ir_dir = require_dir(base / "vi", "M3FD visible"), require_dir(base / "ir", "M3FD infrared")
        vi_idx, ir_idx = index_dir(vis_dir), index_dir(ir_dir)
        json_path = root / (ann_file or f"annotations/{split}.json")

        def paths(file_name: str) -> tuple[str, str, str]:
            stem = Path(file_name).stem
            return stem, _find_image(vis_dir, stem, vi_idx), _find_image(ir_dir, stem, ir_idx)

        return PairedDetDataset(_coco_records(paths, json_path, M3FD_CLASSES), M3FD_CLASSES, transform, strict,
                                f"m3fd/{split}", ir_high_depth=ir_high_depth)
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

        recs = [DetRecord(r.name, r.vis_path, r.ir_path, r.ann_path, "night", r.image_id, r.size, r.boxes)
                for r in _coco_records(paths, root / (ann_file or f"annotations/{split}.json"), LLVIP_CLASSES)]
        return PairedDetDataset(recs, LLVIP_CLASSES, transform, strict, f"llvip/{split}", ir_high_depth=ir_high_depth)
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

    return PairedDetDataset(_coco_records(paths, json_path, FLIR_CLASSES), FLIR_CLASSES, transform, strict,
                            f"flir_aligned/{split}", ir_high_depth=ir_high_depth)


# ---------------------------------------------------------------------------------------------------------- KAIST
def kaist_condition(name: str) -> str | None:
    """Day / night from the KAIST set number: sets 00-02 and 06-08 are day, 03-05 and 09-11 night."""
    m = re.search(r"set(\d\d)", name)
    if not m:
        return None
    return "day" if int(m.group(1)) in (0, 1, 2, 6, 7, 8) else "night"


def build_kaist(root: Path, split: str, transform: DetTransform | None = None, *, strict: bool = True,
                list_file: str | None = None, ann_dir: str = "annotations", kaist_setting: str = "reasonable",
                kaist_min_height: float = 50.0, ir_high_depth: str = "minmax") -> PairedDetDataset:
    """KAIST multispectral pedestrians (CVPR 2015), 1 class person.

    Images ``root/setXX/VYYY/{visible, lwir}/IZZZZZ.jpg``; the split is a list file (``list_file``, else
    ``root/{split}.txt`` or ``root/imageSets/{split}.txt``) of relative stems such as ``set06/V000/I00019`` or
    ``set06_V000_I00019``. Annotations (bbGt v3 txt, original or improved / sanitized) at
    ``root/{ann_dir}/setXX/VYYY/IZZZZZ.txt`` or flattened ``root/{ann_dir}/setXX_VYYY_IZZZZZ.txt``.
    ``kaist_setting`` (``reasonable`` | ``all``) and ``kaist_min_height`` decide the ignore regions (see
    :func:`ivtune.data.det.formats.parse_kaist`).
    """
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
    if kaist_setting not in KAIST_SETTINGS:
        raise ConfigError(f"kaist_setting must be one of {KAIST_SETTINGS}, got {kaist_setting!r}.")
    read = _lazy(lambda p: parse_kaist(p, kaist_setting, kaist_min_height))
    return PairedDetDataset(records, KAIST_CLASSES, transform, strict, f"kaist/{split}", read, ir_high_depth)


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
    records = [DetRecord(s, v, i, _opt(lab_dir / f"{s}.txt"), condition_from_name(s))
               for s, v, i in _pairs_from_dirs(vis_dir, ir_dir)]
    return PairedDetDataset(records, classes, transform, strict, f"msrs_det/{split}/{annotation}",
                            _missing_ann_ok(lambda p: parse_yolo(p, classes)), ir_high_depth)


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
    if classes is None:
        classes = SYNTHETIC_DET_CLASSES if (root / "synthetic.json").is_file() else tuple(file_classes)
    classes = tuple(classes)
    id_map = {k: classes.index(n) for k, n in enumerate(file_classes) if n in classes}
    base = root / split
    bdir = base / box_dir
    vdir, idir = require_dir(base / vis_dir, "folders visible"), require_dir(base / ir_dir, "folders infrared")
    records = [DetRecord(s, v, i, _opt(bdir / f"{s}.txt"), condition_from_name(s))
               for s, v, i in _pairs_from_dirs(vdir, idir)]
    return PairedDetDataset(records, classes, transform, strict, f"folders/{split}",
                            _missing_ann_ok(lambda p: parse_pixel_boxes(p, classes, id_map)), ir_high_depth)


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
        **options: per-dataset options (``format``, ``ann_file``, ``annotation``, ``kaist_setting``, ``classes``,
            ``num_samples`` ...); unknown ones are a ConfigError listing the accepted ones.

    Raises:
        ConfigError: unknown name, split or option, or a missing root.
        DataError: missing folders or files, unknown classes, unreadable annotations.
    """
    return build_from_registry(DET_DATASETS, "detection", name, root, split, transform, strict=strict, **options)


__all__ = ["DET_DATASETS", "SyntheticDetDataset", "build_det_dataset", "flir_key",
           "kaist_condition"]
