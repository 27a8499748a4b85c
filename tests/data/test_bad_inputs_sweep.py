"""`ivtune data check` over a table of corrupted inputs, every task and format: each one is reported with its path.

A row builds a small tree, damages one thing and names what the check must say: a problem (``data check`` fails,
the message carries the file), a counted repair or input left out (``data check`` passes and lists it with the
file), or an error at dataset construction that names the file (what ``data check`` prints as ``error: ...``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivtune.data.scenes import write_synthetic_dataset
from ivtune.errors import IVTuneError
from ivtune.runner.datacheck import check_config
from tests.helpers import REPO, retarget

H, W = 32, 40
CONFIGS = {"seg": REPO / "configs/seg/synthetic_tiny.yaml", "det": REPO / "configs/det/synthetic_tiny_fcos.yaml",
           "sod": REPO / "configs/sod/synthetic_tiny.yaml"}


def png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(arr)).save(path)
    return path


def rgb(value: int = 90) -> np.ndarray:
    return np.full((H, W, 3), value, np.uint8)


def gray(value: int = 90) -> np.ndarray:
    return np.full((H, W), value, np.uint8)


def synthetic_tree(root: Path) -> Path:
    """A folders tree (seg labels, SOD saliency, det boxes) of 3 train pairs."""
    return write_synthetic_dataset(root, {"train": 3}, height=H, width=W)


def first(folder: Path) -> Path:
    return sorted(folder.iterdir())[0]


# ------------------------------------------------------------------------------------------ damage, per row
def truncated_vis(root: Path) -> Path:
    p = first(root / "train" / "vis")
    p.write_bytes(p.read_bytes()[:60])
    return p


def nan_thermal(root: Path) -> Path:
    p = first(root / "train" / "ir")
    values = np.full((H, W), 20.5, np.float32)
    values[3, 5] = np.nan
    p.unlink()
    out = p.with_suffix(".tif")
    Image.fromarray(values, "F").save(out)
    return out


def label_out_of_range(root: Path) -> Path:
    p = first(root / "train" / "labels")
    png(p, np.full((H, W), 40, np.uint8))
    return p


def label_wrong_size(root: Path) -> Path:
    p = first(root / "train" / "labels")
    png(p, np.zeros((H - 2, W), np.uint8))
    return p


def zero_byte_label(root: Path) -> Path:
    p = first(root / "train" / "labels")
    p.write_bytes(b"")
    return p


def colour_label(root: Path) -> Path:
    p = first(root / "train" / "labels")
    arr = np.zeros((H, W, 3), np.uint8)
    arr[..., 0] = 200
    png(p, arr)
    return p


def ir_missing(root: Path) -> Path:
    p = first(root / "train" / "ir")
    p.unlink()
    return p


def all_ignore(root: Path) -> Path:
    for p in (root / "train" / "labels").iterdir():
        png(p, np.full((H, W), 255, np.uint8))
    return root / "train" / "labels"


def boxes_upper_case_and_orphan(root: Path) -> Path:
    boxes = root / "train" / "boxes"
    for p in list(boxes.iterdir()):
        p.rename(p.with_suffix(".TXT"))  # used as the labels they are
    orphan = boxes / "nobody.txt"
    orphan.write_text("0 1 1 5 5\n")
    return orphan


def boxes_all_empty(root: Path) -> Path:
    for p in (root / "train" / "boxes").iterdir():
        p.write_text("")
    return root / "train" / "boxes"


def box_nan(root: Path) -> Path:
    p = first(root / "train" / "boxes")
    p.write_text(f"{p.read_text().split()[0]} nan 1 5 5\n")  # a class id the file uses
    return p


def box_outside(root: Path) -> Path:
    p = first(root / "train" / "boxes")
    cid = p.read_text().split()[0]  # a class id the file uses
    p.write_text(p.read_text() + f"{cid} -5 2 10 10\n{cid} {W + 5} 2 {W + 9} 10\n")
    return p


def box_unknown_class(root: Path) -> Path:
    p = first(root / "train" / "boxes")
    p.write_text("99 1 1 5 5\n")
    return p


def classes_duplicated(root: Path) -> Path:
    p = root / "classes.txt"
    p.write_text("0 person\n1 car\n2 person\n")
    return p


def saliency_all_black(root: Path) -> Path:
    for p in (root / "train" / "saliency").iterdir():
        png(p, gray(0))
    return root / "train" / "saliency"


def saliency_wrong_size(root: Path) -> Path:
    p = first(root / "train" / "saliency")
    png(p, np.full((H // 2, W // 2), 255, np.uint8))
    return p


# ------------------------------------------------------------------------------------------ det formats
def m3fd_tree(root: Path) -> Path:
    for s in ("a", "b"):
        png(root / "vi" / f"{s}.png", rgb())
        png(root / "ir" / f"{s}.png", gray())
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{s}.TXT").write_text("1 0.5 0.5 0.2 0.2\n")
    return root


def coco_tree(root: Path, images: list, annotations: list) -> Path:
    for s in ("a", "b"):
        png(root / "train" / "vi" / f"{s}.png", rgb())
        png(root / "train" / "ir" / f"{s}.png", gray())
    ann = root / "annotations" / "train.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 1, "name": "Car"}]}))
    return ann


IMAGES = [{"id": 1, "file_name": "a.png", "height": H, "width": W}, {"id": 2, "file_name": "b.png", "height": H,
                                                                      "width": W}]
BOX = {"image_id": 1, "bbox": [2, 2, 8, 8], "category_id": 1}


def coco_orphan(root: Path) -> Path:
    return coco_tree(root, IMAGES, [BOX, {**BOX, "image_id": 77}])


def coco_no_id(root: Path) -> Path:
    return coco_tree(root, [IMAGES[0], {"file_name": "b.png"}], [BOX])


def coco_duplicate_id(root: Path) -> Path:
    return coco_tree(root, [IMAGES[0], {**IMAGES[1], "id": 1}], [BOX])


def voc_bad_number(root: Path) -> Path:
    png(root / "visible" / "train" / "a.jpg", rgb())
    png(root / "infrared" / "train" / "a.jpg", rgb())
    p = root / "Annotations" / "a.xml"
    p.parent.mkdir()
    p.write_text("<annotation><object><name>person</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>5</xmax>"
                 "<ymax>5</ymax></bndbox></object></annotation>")
    return p


@dataclass
class Row:
    """One corrupted input: how to build it and what ``data check`` must say about it."""

    name: str
    task: str
    dataset: str
    damage: Callable[[Path], Path]
    outcome: str  # "problem" | "repair" | "error" | "ok"
    says: str  # text the report (or error) must hold besides the path
    tree: Callable[[Path], Path] = synthetic_tree
    options: tuple[str, ...] = ()


ROWS = [
    Row("truncated visible png", "seg", "folders", truncated_vis, "problem", "unreadable"),
    Row("nan in a float thermal tiff", "seg", "folders", nan_thermal, "problem", "non-finite pixel value"),
    Row("label value outside the classes", "seg", "folders", label_out_of_range, "problem", "outside the"),
    Row("label of another size", "seg", "folders", label_wrong_size, "problem", "Label size mismatch"),
    Row("zero-byte label", "seg", "folders", zero_byte_label, "problem", "unreadable"),
    Row("colour-coded label", "seg", "folders", colour_label, "problem", "colour-coded"),
    Row("missing thermal partner", "seg", "folders", ir_missing, "problem", "not found"),
    Row("every label pixel ignored", "seg", "folders", all_ignore, "problem", "not one labelled pixel"),
    Row("nan thermal (sod)", "sod", "folders", nan_thermal, "problem", "non-finite"),
    Row("saliency all black", "sod", "folders", saliency_all_black, "problem", "not one salient pixel"),
    Row("saliency of another size", "sod", "folders", saliency_wrong_size, "problem", "GT size mismatch"),
    Row("saliency resized (resize_gt)", "sod", "folders", saliency_wrong_size, "repair", "resized",
        options=("data.resize_gt=true",)),
    Row("box file with nan", "det", "folders", box_nan, "problem", "non-finite"),
    Row("box of an unknown class", "det", "folders", box_unknown_class, "problem", "unknown class id '99'"),
    Row("no box in the split", "det", "folders", boxes_all_empty, "problem", "not one box"),
    Row("boxes outside the image", "det", "folders", box_outside, "repair", "clipped to the image"),
    Row("label file of no image", "det", "folders", boxes_upper_case_and_orphan, "repair", "label file of no image"),
    Row("class named twice", "det", "folders", classes_duplicated, "error", "more than once"),
    Row("truncated visible (det)", "det", "folders", truncated_vis, "problem", "unreadable"),
    Row("coco annotation of no image", "det", "m3fd", coco_orphan, "repair", "refer to image ids",
        tree=lambda root: root, options=("data.format=coco",)),
    Row("coco image without id", "det", "m3fd", coco_no_id, "error", "has no 'id'", tree=lambda root: root,
        options=("data.format=coco",)),
    Row("coco duplicate image id", "det", "m3fd", coco_duplicate_id, "error", "already used by a.png",
        tree=lambda root: root, options=("data.format=coco",)),
    Row("voc bndbox not a number", "det", "llvip", voc_bad_number, "problem", "<object> #0 (person) <bndbox>",
        tree=lambda root: root),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_data_check_reports_each_bad_input_with_its_path(row, tmp_path):
    root = row.tree(tmp_path / "data")
    root.mkdir(parents=True, exist_ok=True)
    bad = row.damage(root)
    config = retarget(CONFIGS[row.task], row.dataset, tmp_path)
    overrides = [f"data.root={root}", "data.val_split=null", "data.test_split=null", *row.options]
    lines: list[str] = []
    if row.outcome == "error":
        with pytest.raises(IVTuneError) as info:
            check_config(str(config), overrides, ["train"], echo=lines.append)
        text = str(info.value)
    else:
        ok = check_config(str(config), overrides, ["train"], echo=lines.append)
        text = "\n".join(lines)
        assert ok == (row.outcome != "problem"), text
    assert str(bad) in text, text
    assert row.says in text, text
    if row.outcome == "repair":
        assert "Repaired or left out (counted)" in text, text


def test_upper_case_yolo_labels_are_used(tmp_path):
    root = m3fd_tree(tmp_path / "m3fd")
    config = retarget(CONFIGS["det"], "m3fd", tmp_path)
    lines: list[str] = []
    assert check_config(str(config), [f"data.root={root}", "data.train_split=all", "data.val_split=null",
                                      "data.test_split=null"], None, echo=lines.append)
    text = "\n".join(lines)
    assert "Boxes: 2 (People 0, Car 2" in text and "images without boxes 0" in text
