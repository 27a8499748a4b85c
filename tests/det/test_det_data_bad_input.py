"""Bad input: clipping counted, zero-area boxes dropped, unknown classes, negatives kept, missing partners."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivtune.errors import DataError
from ivtune.tasks.det.datasets import build_det_dataset

H, W = 40, 60


def img(path: Path, mode: str = "RGB", h: int = H, w: int = W) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3) if mode == "RGB" else (h, w), np.uint8), mode).save(path)
    return path


def folders_tree(root: Path, boxes: dict[str, str], classes: str = "0 person\n1 car\n") -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text(classes)
    for name, content in boxes.items():
        img(root / "train" / "vis" / f"{name}.png")
        img(root / "train" / "ir" / f"{name}.png", "L")
        if content is not None:
            p = root / "train" / "boxes" / f"{name}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(content)
    return root


def test_clipping_and_zero_area_counted(tmp_path):
    root = folders_tree(tmp_path, {
        "a": "0 -5 10 20 50\n1 50 30 70 45\n0 5 5 5 20\n",  # clipped both sides; clipped; zero width
        "b": "1 70 10 90 20\n0 10 10 20 20\n",  # entirely outside (zero area after clipping); fine
    })
    ds = build_det_dataset("folders", root, "train")
    a = ds.load_raw(0)
    np.testing.assert_array_equal(a["boxes"], [[0, 10, 20, 40], [50, 30, 60, 40]])
    assert a["labels"].tolist() == [0, 1]
    assert ds.clipped_boxes == 2 and ds.dropped_boxes == 2
    rep = ds.scan()
    assert rep.ok and rep.clipped_boxes == 2 and rep.dropped_boxes == 2
    assert rep.boxes_per_class == {"person": 2, "car": 1}
    text = rep.format()
    assert "Clipped to the image: 2 box(es); dropped (zero area): 2 box(es)" in text
    assert str(root / "train" / "boxes" / "a.txt") in text and "2 clipped, 1 dropped" in text


def test_unknown_class_lists_known(tmp_path):
    root = folders_tree(tmp_path, {"a": "7 1 1 10 10\n"})
    with pytest.raises(DataError, match=r"unknown class id '7'.*0=person, 1=car"):
        build_det_dataset("folders", root, "train")
    ds = build_det_dataset("folders", root, "train", strict=False)
    rep = ds.scan()
    assert not rep.ok and rep.problems[0][0] == "annotation" and "0=person, 1=car" in rep.problems[0][2]


def test_unknown_class_name_voc_and_yolo(tmp_path):
    img(tmp_path / "visible" / "train" / "1.jpg")
    img(tmp_path / "infrared" / "train" / "1.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "1.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
        "</bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"1\.xml.*unknown class name 'dog'.*0=person"):
        build_det_dataset("llvip", tmp_path, "train")
    m = tmp_path / "m3fd"
    img(m / "vi" / "1.png")
    img(m / "ir" / "1.png", "L")
    (m / "labels").mkdir()
    (m / "labels" / "1.txt").write_text("6 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="0=People, 1=Car, 2=Bus, 3=Motorcycle, 4=Lamp, 5=Truck"):
        build_det_dataset("m3fd", m, "all")


def test_negatives_kept(tmp_path):
    root = folders_tree(tmp_path, {"a": "0 1 1 10 10\n", "b": "", "c": None})  # empty file, no file
    ds = build_det_dataset("folders", root, "train")
    assert len(ds) == 3
    assert [len(ds.load_raw(i)["boxes"]) for i in range(3)] == [1, 0, 0]
    assert ds.load_raw(2)["boxes"].shape == (0, 4)
    rep = ds.scan()
    assert rep.ok and rep.empty_images == 2
    coco = ds.to_coco()
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 1
    assert ds[1]["boxes"].shape == (0, 4)


def test_missing_partner_named(tmp_path):
    root = folders_tree(tmp_path, {"a": "", "b": ""})
    (root / "train" / "ir" / "b.png").unlink()
    (root / "train" / "vis" / "a.png").unlink()
    with pytest.raises(DataError) as info:
        build_det_dataset("folders", root, "train")
    msg = str(info.value)
    assert "2 file(s) missing" in msg
    assert str(root / "train" / "ir" / "b.png") in msg and str(root / "train" / "vis" / "a.png") in msg
    ds = build_det_dataset("folders", root, "train", strict=False)
    rep = ds.scan()
    assert [k for k, _, _ in rep.problems] == ["missing", "missing"]
    assert str(root / "train" / "ir" / "b.png") in rep.format()
    with pytest.raises(DataError, match="not found"):
        ds.load_raw(1)


def test_size_mismatch_reported(tmp_path):
    root = folders_tree(tmp_path, {"a": "0 1 1 10 10\n"})
    img(root / "train" / "ir" / "a.png", "L", h=20, w=30)
    ds = build_det_dataset("folders", root, "train")
    with pytest.raises(DataError, match="size mismatch"):
        ds.load_raw(0)
    assert ds.scan().problems[0][0] == "size_mismatch"


def test_bad_yolo_line(tmp_path):
    m = tmp_path
    img(m / "vi" / "1.png")
    img(m / "ir" / "1.png", "L")
    (m / "labels").mkdir()
    (m / "labels" / "1.txt").write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(DataError, match=r"1\.txt line 1: expected 5 values"):
        build_det_dataset("m3fd", m, "all")
