"""Every input used, or reported with a count and a path, in `data check` and at the start of `train` (issue 18).

One test per case of the issue: non-finite thermal values, a segmentation split without a labelled pixel, YOLO
files named ``*.TXT``, COCO annotations of no image / images without an id / duplicate ids, VOC coordinates,
detection clip / drop counts at train time, predict's pairing, ``demo --steps 0``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ivtune.config import load_config
from ivtune.data.io import read_gray
from ivtune.data.scenes import write_synthetic_dataset
from ivtune.errors import CheckpointMismatchError, ConfigError, DataError
from ivtune.runner.predict import match_pairs
from ivtune.runner.run import _preflight, evaluate, train
from ivtune.tasks import get_task
from ivtune.tasks.det.datasets import build_det_dataset
from ivtune.tasks.det.formats import parse_coco
from tests.helpers import REPO, retarget

H, W = 32, 40


def png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_thermal_with_non_finite_values_is_an_error_naming_the_file(tmp_path, bad):
    values = np.linspace(10, 30, H * W, dtype=np.float32).reshape(H, W)
    values[2, 3] = bad
    path = tmp_path / "t.tif"
    Image.fromarray(values, "F").save(path)
    with pytest.raises(DataError, match=rf"{path} has 1 non-finite pixel value\(s\)"):
        read_gray(path)
    values[2, 3] = 20.0
    Image.fromarray(values, "F").save(path)
    assert read_gray(path).max() == 255  # a finite float image still reads (min-max stretched)


def test_segmentation_split_without_a_labelled_pixel_stops_before_training(tmp_path):
    root = write_synthetic_dataset(tmp_path / "data", {"train": 2, "test": 1}, height=64, width=80)
    for p in (root / "train" / "labels").iterdir():
        png(p, np.full((64, 80), 255, np.uint8))
    config = retarget(REPO / "configs" / "seg" / "synthetic_tiny.yaml", "folders", tmp_path)
    overrides = [f"data.root={root}", "data.val_split=null", f"train.output_dir={tmp_path}/runs",
                 "train.run_name=r", "data.crop_size=[64, 80]", "train.max_steps=2"]
    with pytest.raises(DataError, match="nothing was trained") as info:
        train(config, overrides)
    assert "not one labelled pixel in the 2 label file(s)" in str(info.value)
    assert f"{root / 'train' / 'labels'}: not one labelled pixel" in str(info.value)
    assert not (tmp_path / "runs" / "r").exists()


def m3fd(root: Path, labels: dict[str, str]) -> Path:
    for stem, text in labels.items():
        png(root / "vi" / f"{stem}.png", np.zeros((H, W, 3), np.uint8))
        png(root / "ir" / f"{stem}.png", np.zeros((H, W), np.uint8))
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{stem}.TXT").write_text(text)
    return root


def test_yolo_label_files_in_upper_case_are_read(tmp_path):
    ds = build_det_dataset("m3fd", m3fd(tmp_path, {"a": "1 0.5 0.5 0.2 0.2\n", "b": "0 0.5 0.5 0.4 0.4\n"}), "all")
    assert [len(ds.load_raw(i)["boxes"]) for i in range(2)] == [1, 1]
    rep = ds.scan()
    assert rep.ok and rep.num_boxes == 2 and rep.empty_images == 0


def test_label_files_of_no_image_are_counted_and_a_train_split_without_boxes_is_an_error(tmp_path):
    root = m3fd(tmp_path, {"a": "", "b": ""})
    (root / "labels" / "A.txt").write_text("1 0.5 0.5 0.2 0.2\n")  # named after no image (case differs)
    (root / "labels" / "a.TXT").unlink()
    rep = build_det_dataset("m3fd", root, "all", strict=False).scan()
    assert not rep.ok
    kinds = {k: p for k, p, _ in rep.problems}
    assert kinds["no_targets"] == str(root / "labels")
    assert any(str(root / "labels" / "A.txt") in line and "label file of no image" in line for line in rep.repairs)


def coco(root: Path, images: list, annotations: list) -> Path:
    path = root / "annotations" / "train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "Car"}]}))
    for name in ("a", "b"):
        png(root / "train" / "vi" / f"{name}.png", np.zeros((H, W, 3), np.uint8))
        png(root / "train" / "ir" / f"{name}.png", np.zeros((H, W), np.uint8))
    return path


IMAGES = [{"id": 1, "file_name": "a.png", "height": H, "width": W},
          {"id": 2, "file_name": "b.png", "height": H, "width": W}]
BOX = {"image_id": 1, "bbox": [2, 2, 8, 8], "category_id": 1}


def test_coco_annotations_of_no_image_are_counted_by_data_check_and_train(tmp_path, caplog):
    path = coco(tmp_path, IMAGES, [BOX, {**BOX, "image_id": 9}, {**BOX, "image_id": 9}])
    with pytest.raises(DataError, match=r"2 annotation\(s\) refer to image ids that are not in 'images' \(9\)"):
        parse_coco(path, ["Car"])  # a caller that does not collect them gets an error, never a silent drop
    unused: list = []
    assert [len(i.boxes) for i in parse_coco(path, ["Car"], unused=unused)] == [1, 0]
    assert unused == [(str(path), "2 annotation(s) refer to image ids that are not in 'images' (9); they are not "
                                  "used")]
    rep = build_det_dataset("m3fd", tmp_path, "train", format="coco").scan()
    assert rep.ok and f"{path}: 2 annotation(s) refer to image ids" in rep.format()
    config = retarget(REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml", "m3fd", tmp_path)
    cfg = load_config(config, [f"data.root={tmp_path}", "data.format=coco", "data.val_split=null"])
    with caplog.at_level(logging.INFO, logger="ivtune"):
        _preflight(cfg, get_task("det"), ["train"])  # what train runs before it writes anything
    assert f"{path}: 2 annotation(s) refer to image ids" in caplog.text


@pytest.mark.parametrize("images, match", [
    ([IMAGES[0], {"file_name": "b.png"}], r"train\.json: images\[1\] \(b\.png\) has no 'id'"),
    ([IMAGES[0], {**IMAGES[1], "id": 1}], r"train\.json: images\[1\] \(b\.png\) has id 1, already used by a\.png"),
    ([IMAGES[0], {"id": 2}], r"train\.json: images\[1\] \(2\) has no 'file_name'"),
])
def test_coco_image_entries_are_checked_naming_the_json(tmp_path, images, match):
    coco(tmp_path, images, [BOX])
    with pytest.raises(DataError, match=match):
        build_det_dataset("m3fd", tmp_path, "train", format="coco", strict=False)


def test_coco_box_values_must_be_finite(tmp_path):
    path = coco(tmp_path, IMAGES, [{**BOX, "bbox": [1, 1, float("nan"), 3]}])
    with pytest.raises(DataError, match=r"annotation #0 \(image_id 1\) has a non-finite bbox"):
        parse_coco(path, ["Car"])


def test_voc_coordinates_name_the_object_not_line_zero(tmp_path):
    png(tmp_path / "visible" / "train" / "a.jpg", np.zeros((H, W, 3), np.uint8))
    png(tmp_path / "infrared" / "train" / "a.jpg", np.zeros((H, W, 3), np.uint8))
    xml = tmp_path / "Annotations" / "a.xml"
    xml.parent.mkdir()
    xml.write_text("<annotation><object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
                   "</bndbox></object><object><name>person</name><bndbox><xmin>x</xmin><ymin>1</ymin><xmax>5</xmax>"
                   "<ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"lacks one of xmin"):
        build_det_dataset("llvip", tmp_path, "train")
    xml.write_text(xml.read_text().replace("<xmax>5</xmax></bndbox>", "<xmax>5</xmax><ymax>5</ymax></bndbox>", 1))
    with pytest.raises(DataError) as info:
        build_det_dataset("llvip", tmp_path, "train")
    assert f"{xml} <object> #1 (person) <bndbox>: expected numbers" in str(info.value)
    assert "line 0" not in str(info.value)


def test_train_shows_the_clip_and_drop_counts_that_data_check_shows(tmp_path, caplog):
    root = write_synthetic_dataset(tmp_path / "data", {"train": 2}, height=H, width=W)
    box = sorted((root / "train" / "boxes").iterdir())[0]
    cid = box.read_text().split()[0]  # a class id the file uses
    box.write_text(box.read_text() + f"{cid} -5 2 10 10\n{cid} {W + 5} 2 {W + 9} 10\n")
    config = retarget(REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml", "folders", tmp_path)
    cfg = load_config(config, [f"data.root={root}", "data.val_split=null"])
    with caplog.at_level(logging.WARNING, logger="ivtune"):
        _preflight(cfg, get_task("det"), ["train"])
    assert "Clipped to the image: 1 box(es); dropped (zero area): 1 box(es)." in caplog.text
    assert f"{box}: 1 clipped, 1 dropped" in caplog.text
    assert "1 box(es) clipped to the image, 1 zero-area box(es) dropped" in caplog.text


def test_eval_shows_the_repair_counts_of_the_scored_split_before_loading_weights(tmp_path, caplog):
    root = write_synthetic_dataset(tmp_path / "data", {"train": 2, "test": 2}, height=H, width=W)
    box = sorted((root / "test" / "boxes").iterdir())[0]
    cid = box.read_text().split()[0]
    box.write_text(box.read_text() + f"{cid} -5 2 10 10\n")
    config = retarget(REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml", "folders", tmp_path)
    overrides = [f"data.root={root}", "data.val_split=null", "data.test_split=test", f"train.output_dir={tmp_path}"]
    with caplog.at_level(logging.WARNING, logger="ivtune"), pytest.raises(CheckpointMismatchError, match="not found"):
        evaluate(config, overrides=overrides)  # nothing trained: the scan still runs first and says what it repairs
    assert "data split 'test'" in caplog.text and f"{box}: 1 clipped" in caplog.text


def test_a_class_list_naming_a_class_twice_is_an_error(tmp_path):
    root = write_synthetic_dataset(tmp_path / "data", {"train": 1}, height=H, width=W)
    with pytest.raises(ConfigError, match=r"data\.classes names \['tree'\], which .*classes\.txt does not list"):
        build_det_dataset("folders", root, "train", classes=["person", "tree"])
    (root / "classes.txt").write_text("0 person\n1 car\n2 Person\n")
    with pytest.raises(DataError, match=r"classes\.txt lists names \['Person', 'person'\] more than once"):
        build_det_dataset("folders", root, "train")


# ------------------------------------------------------------------------------------------ predict and demo
def pair_folders(tmp_path: Path, vis: list[str], ir: list[str]) -> tuple[Path, Path]:
    for name in vis:
        png(tmp_path / "vis" / name, np.zeros((8, 8, 3), np.uint8))
    for name in ir:
        png(tmp_path / "ir" / name, np.zeros((8, 8), np.uint8))
    (tmp_path / "vis").mkdir(exist_ok=True)
    (tmp_path / "ir").mkdir(exist_ok=True)
    return tmp_path / "vis", tmp_path / "ir"


def test_predict_pairs_an_ir_only_file_as_an_error(tmp_path):
    vis, ir = pair_folders(tmp_path, ["a.png"], ["a.png", "b.png"])
    with pytest.raises(DataError, match=rf"1 infrared image\(s\) have no visible partner in {vis}: {ir / 'b.png'}"):
        match_pairs(vis, ir)


def test_predict_does_not_pick_between_two_images_of_one_name(tmp_path):
    vis, ir = pair_folders(tmp_path, ["a.png", "a.jpg"], ["a.png"])
    with pytest.raises(DataError, match=r"Two images share the stem 'a'"):
        match_pairs(vis, ir)


def test_predict_counts_files_that_are_not_images(tmp_path, caplog):
    vis, ir = pair_folders(tmp_path, ["a.png"], ["a.png"])
    (vis / "notes.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="ivtune"):
        assert [name for name, _, _ in match_pairs(vis, ir)] == ["a"]
    assert f"1 file(s) in {vis} are not images" in caplog.text and "notes.txt" in caplog.text


@pytest.mark.parametrize("steps", [0, -3])
def test_demo_with_no_steps_is_an_error_not_the_default(tmp_path, steps):
    from ivtune.runner.demo import run_demo

    with pytest.raises(ConfigError, match=rf"demo steps must be a whole number >= 1, got {steps}"):
        run_demo(tmp_path / "demo", steps=steps, try_hub=False, echo=lambda _: None)
    assert not (tmp_path / "demo").exists()
