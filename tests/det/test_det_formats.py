"""Each annotation parser and dataset layout on tiny fixtures written here; the registry's error messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivtune.data import write_synthetic_dataset
from ivtune.errors import ConfigError
from ivtune.tasks.det.datasets import (
    M3FD_CLASSES,
    build_det_dataset,
    flir_key,
    kaist_condition,
    parse_coco,
    parse_kaist,
    parse_pixel_boxes,
    parse_voc,
    parse_yolo,
)

H, W = 40, 60


def img(path: Path, mode: str = "RGB", h: int = H, w: int = W, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def coco_json(path: Path, images: list[tuple[int, str]], anns: list[tuple[int, int, list[float]]],
              cats: list[tuple[int, str]], crowd: tuple[int, ...] = ()) -> Path:
    data = {
        "images": [{"id": i, "file_name": f, "height": H, "width": W} for i, f in images],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3],
                         "iscrowd": int(k in crowd)} for k, (i, c, b) in enumerate(anns)],
        "categories": [{"id": c, "name": n} for c, n in cats],
    }
    return text(path, json.dumps(data))


# ------------------------------------------------------------------------------------------------ parsers
def test_yolo_whitespace_quirks(tmp_path):
    # MSRS fusion style: two spaces, trailing spaces, no final newline; plus a blank line
    p = text(tmp_path / "a.txt", "0  0.5  0.5  0.2  0.4  \n\n2 0.25 0.75 0.1 0.1  ")
    rb = parse_yolo(p, ("person", "bicycle", "car"))
    assert rb.normalized
    np.testing.assert_allclose(rb.xyxy, [[0.4, 0.3, 0.6, 0.7], [0.2, 0.7, 0.3, 0.8]])
    assert rb.labels.tolist() == [0, 2] and rb.ignore.tolist() == [False, False]


def test_pixel_boxes_and_id_map(tmp_path):
    p = text(tmp_path / "b.txt", "3 1 2 11 22\n5 0 0 4 4\n")
    rb = parse_pixel_boxes(p, ("person", "car", "bike"), {3: 0, 4: 1, 5: 2})
    assert rb.labels.tolist() == [0, 2]
    np.testing.assert_array_equal(rb.xyxy, [[1, 2, 11, 22], [0, 0, 4, 4]])


def test_voc(tmp_path):
    xml = """<annotation><size><width>60</width><height>40</height><depth>3</depth></size>
    <object><name>person</name><difficult>0</difficult><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>25</xmax>
    <ymax>36</ymax></bndbox></object>
    <object><name>Person</name><difficult>1</difficult><bndbox><xmin>30</xmin><ymin>1</ymin><xmax>40</xmax>
    <ymax>21</ymax></bndbox></object></annotation>"""
    rb, size = parse_voc(text(tmp_path / "x.xml", xml), ("person",))
    assert size == (40, 60)
    np.testing.assert_array_equal(rb.xyxy, [[5, 6, 25, 36], [30, 1, 40, 21]])
    assert rb.labels.tolist() == [0, 0] and rb.ignore.tolist() == [False, True]


KAIST_TXT = """% bbGt version=3
person 10 5 20 60 0 0 0 0 0 0 0
person 40 5 10 30 0 0 0 0 0 0 0
person 10 5 20 60 2 0 0 0 0 0 0
people 0 0 30 70 0 0 0 0 0 0 0
person? 1 1 20 60 0 0 0 0 0 0 0
cyclist 2 2 20 60 0 0 0 0 0 0 0
person 3 3 20 60 0 0 0 0 0 1 0
"""


def test_kaist_reasonable_and_all(tmp_path):
    p = text(tmp_path / "I00001.txt", KAIST_TXT)
    r = parse_kaist(p, "reasonable")
    np.testing.assert_array_equal(r.xyxy[0], [10, 5, 30, 65])  # x y w h -> xyxy
    assert r.labels.tolist() == [0] * 7
    # only the tall, unoccluded, not-flagged person counts; small (h 30 < 50), heavy occlusion, people, person?,
    # cyclist and the ign=1 person are ignore regions
    assert r.ignore.tolist() == [False, True, True, True, True, True, True]
    a = parse_kaist(p, "all")
    assert a.ignore.tolist() == [False, False, False, True, True, True, True]
    assert parse_kaist(text(tmp_path / "empty.txt", "% bbGt version=3\n"), "reasonable").xyxy.shape == (0, 4)


def test_coco_by_category_name_and_crowd(tmp_path):
    p = coco_json(tmp_path / "a.json", [(7, "a.png"), (9, "b.png")],
                  [(7, 11, [1, 2, 10, 20]), (7, 12, [0, 0, 5, 5]), (7, 12, [30, 10, 5, 5])],
                  [(11, "car"), (12, "People"), (13, "Dog")], crowd=(2,))
    imgs = parse_coco(p, M3FD_CLASSES)
    assert [i.image_id for i in imgs] == [7, 9] and imgs[0].size == (H, W)
    np.testing.assert_array_equal(imgs[0].boxes.xyxy, [[1, 2, 11, 22], [0, 0, 5, 5], [30, 10, 35, 15]])
    assert imgs[0].boxes.labels.tolist() == [1, 0, 0] and imgs[0].boxes.ignore.tolist() == [False, False, True]
    assert len(imgs[1].boxes) == 0  # unused unknown category "Dog" is fine


# ------------------------------------------------------------------------------------------------ layouts
def test_m3fd_yolo_layout(tmp_path):
    for s in ("00001", "00002", "00003"):
        img(tmp_path / "vi" / f"{s}.png")
        img(tmp_path / "ir" / f"{s}.png", "L")
    text(tmp_path / "labels" / "00001.txt", "1 0.5 0.5 0.5 0.5\n5 0.25 0.25 0.1 0.1\n")
    text(tmp_path / "labels" / "00002.txt", "")
    text(tmp_path / "meta" / "train.txt", "00001\n00002\n")
    ds = build_det_dataset("m3fd", tmp_path, "train")
    assert len(ds) == 2 and ds.classes == M3FD_CLASSES
    s = ds.load_raw(0)
    np.testing.assert_allclose(s["boxes"], [[15, 10, 45, 30], [12, 8, 18, 12]])
    assert s["labels"].tolist() == [1, 5] and s["boxes"].dtype == np.float32 and s["labels"].dtype == np.int64
    assert len(ds.load_raw(1)["boxes"]) == 0
    assert len(build_det_dataset("m3fd", tmp_path, "all")) == 3  # 00003 has no label file: a negative


def test_m3fd_coco_layout(tmp_path):
    img(tmp_path / "test" / "vi" / "00471.png")
    img(tmp_path / "test" / "ir" / "00471.png", "L")
    coco_json(tmp_path / "annotations" / "test.json", [(471, "00471.png")], [(471, 6, [2, 3, 10, 10])],
              [(1, "People"), (6, "Truck")])
    ds = build_det_dataset("m3fd", tmp_path, "test", format="coco")
    s = ds.load_raw(0)
    assert s["meta"]["image_id"] == 471 and s["labels"].tolist() == [5]
    np.testing.assert_array_equal(s["boxes"], [[2, 3, 12, 13]])


def test_llvip_voc_and_coco(tmp_path):
    for split, stem in (("train", "010001"), ("test", "190001")):
        img(tmp_path / "visible" / split / f"{stem}.jpg")
        img(tmp_path / "infrared" / split / f"{stem}.jpg")
    text(tmp_path / "Annotations" / "010001.xml", "<annotation><object><name>person</name><bndbox><xmin>1</xmin>"
         "<ymin>2</ymin><xmax>11</xmax><ymax>32</ymax></bndbox></object></annotation>")
    text(tmp_path / "Annotations" / "190001.xml", "<annotation></annotation>")
    ds = build_det_dataset("llvip", tmp_path, "train")
    s = ds.load_raw(0)
    np.testing.assert_array_equal(s["boxes"], [[1, 2, 11, 32]])
    assert s["meta"]["condition"] == "night" and s["ir"].ndim == 2
    assert len(build_det_dataset("llvip", tmp_path, "test").load_raw(0)["boxes"]) == 0
    coco_json(tmp_path / "annotations" / "train.json", [(3, "010001.jpg")], [(3, 1, [1, 2, 10, 30])], [(1, "person")])
    dc = build_det_dataset("llvip", tmp_path, "train", format="coco")
    np.testing.assert_array_equal(dc.load_raw(0)["boxes"], [[1, 2, 11, 32]])


def test_flir_aligned_pairing(tmp_path):
    for key in ("FLIR_00002", "FLIR_00005"):
        img(tmp_path / "JPEGImages" / f"{key}_RGB.jpg")
        img(tmp_path / "JPEGImages" / f"{key}_PreviewData.jpeg", "L")
    # file_name may name the thermal image, the visible one, or the bare key
    coco_json(tmp_path / "Annotation_test.json", [(1, "FLIR_00002_PreviewData.jpeg"), (2, "FLIR_00005")],
              [(1, 3, [0, 0, 8, 8]), (2, 1, [4, 4, 8, 8])], [(1, "person"), (2, "car"), (3, "bicycle")])
    ds = build_det_dataset("flir_aligned", tmp_path, "test")
    assert [r.name for r in ds.records] == ["FLIR_00002", "FLIR_00005"]
    s = ds.load_raw(0)
    assert s["meta"]["vis_path"].endswith("FLIR_00002_RGB.jpg")
    assert s["meta"]["ir_path"].endswith("FLIR_00002_PreviewData.jpeg")
    assert s["labels"].tolist() == [2]
    assert flir_key("FLIR_08863_RGB.jpg") == "FLIR_08863"


def test_kaist_layout_nested_and_flat_annotations(tmp_path):
    for s, v, f in (("set00", "V000", "I00001"), ("set03", "V001", "I00002")):
        img(tmp_path / s / v / "visible" / f"{f}.jpg")
        img(tmp_path / s / v / "lwir" / f"{f}.jpg")
    text(tmp_path / "annotations" / "set00" / "V000" / "I00001.txt", KAIST_TXT)
    text(tmp_path / "annotations" / "set03_V001_I00002.txt", "% bbGt version=3\n")
    text(tmp_path / "train.txt", "set00/V000/I00001\nset03_V001_I00002\n")
    ds = build_det_dataset("kaist", tmp_path, "train")
    assert [r.condition for r in ds.records] == ["day", "night"]
    s = ds.load_raw(0)
    assert s["ignore"].tolist() == [False, True, True, True, True, True, True]
    assert ds.load_raw(1)["boxes"].shape == (0, 4)
    all_ = build_det_dataset("kaist", tmp_path, "train", kaist_setting="all")
    assert all_.load_raw(0)["ignore"].sum() == 4
    assert kaist_condition("set10_V000_I00001") == "night"
    coco = ds.to_coco()
    assert [a["iscrowd"] for a in coco["annotations"]] == [0, 1, 1, 1, 1, 1, 1]


def test_folders_layout_from_synthetic_writer(tmp_path):
    root = write_synthetic_dataset(tmp_path / "syn", {"val": 3}, seed=1, height=64, width=80)
    ds = build_det_dataset("folders", root, "val")
    mem = build_det_dataset("synthetic", None, "val", num_samples=3, seed=1, height=64, width=80)
    assert ds.classes == mem.classes == ("person", "car", "bike")
    for i in range(3):
        a, b = ds.load_raw(i), mem.load_raw(i)
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_array_equal(a["vis"], b["vis"])
        assert a["meta"]["condition"] == b["meta"]["condition"]


def test_synthetic_deterministic_and_classes():
    a = build_det_dataset("synthetic", None, "train", num_samples=4, seed=3, height=64, width=80, night_fraction=0.5)
    b = build_det_dataset("synthetic", None, "train", num_samples=4, seed=3, height=64, width=80, night_fraction=0.5)
    assert sorted(a.conditions) == ["day", "day", "night", "night"]
    for i in range(4):
        np.testing.assert_array_equal(a.load_raw(i)["boxes"], b.load_raw(i)["boxes"])
        assert set(a.load_raw(i)["labels"].tolist()) <= {0, 1, 2}
    item = a[0]
    assert item["vis"].shape == (3, 64, 80) and item["vis"].max() <= 1


def test_registry_errors(tmp_path):
    with pytest.raises(ConfigError, match="Known: .*msrs_det"):
        build_det_dataset("nope", tmp_path, "train")
    with pytest.raises(ConfigError, match="Valid splits: train, test"):
        build_det_dataset("llvip", tmp_path, "val")
    with pytest.raises(ConfigError, match="Accepted: .*num_samples"):
        build_det_dataset("synthetic", None, "train", colour="red")
    with pytest.raises(ConfigError, match="needs a root"):
        build_det_dataset("kaist", None, "train")
