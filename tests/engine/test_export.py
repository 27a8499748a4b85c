"""ONNX export: onnxruntime reproduces torch per task and backbone family; metadata round trip; named errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ivtune.cli import main
from ivtune.runner import load_config
from ivtune.runner.export import ExportError, export_module
from ivtune.runner.onnx_model import OnnxBackend, OnnxModelError
from ivtune.runner.predictor import Predictor
from ivtune.runner.run import build_module_seeded, train
from ivtune.tasks import get_task
from tests.helpers import SHARED, requires_shared

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# Each export traces, translates and checks a graph: 7-50 s on 2 cores. `make test` (CI) exports a fixed-size
# graph per task on ViT (detection through the CLI, on a trained run); the other backbone families and the
# --dynamic / --fp16 graphs are `slow` (`make test-all`).
SLOW = pytest.mark.slow


def params(values, in_ci):
    """pytest params of the (task, family) ``values``; those not in ``in_ci`` are ``slow``."""
    return [pytest.param(*v, id="-".join(v), marks=() if v in in_ci else SLOW) for v in values]

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"seg": REPO / "configs" / "seg" / "synthetic_tiny.yaml",
           "sod": REPO / "configs" / "sod" / "synthetic_tiny.yaml",
           "det": REPO / "configs" / "det" / "synthetic_tiny_fcos.yaml"}
FAMILIES = {  # backbone overrides of the tiny configs: a plain ViT and a hierarchical Swin (tests/helpers.py TINY)
    "vit": [],
    "swin": ["model.backbone=swin_tiny_patch4_window7_224",
             "model.timm_kwargs={embed_dim: 32, depths: [1, 1, 2, 1], num_heads: [1, 2, 4, 8], img_size: [96, 128]}"],
}
INFO = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0], [200, 0, 0], [0, 200, 0]], "ignore_index": 255}
MSRS = SHARED / "data" / "real" / "msrs_det"


def module_of(task: str, family: str, *extra: str):
    cfg = load_config(CONFIGS[task], FAMILIES[family] + list(extra))
    return build_module_seeded(get_task(cfg.task), cfg, INFO).eval()


def _images(h: int, w: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), rng.integers(0, 256, (h, w), dtype=np.uint8)


def assert_same_prediction(task: str, a, b) -> None:
    """The issue's parity: equal masks / labels, saliency and scores within 1e-4, boxes within 1e-3 px."""
    if task == "seg":
        np.testing.assert_array_equal(a.mask, b.mask)
    elif task == "sod":
        np.testing.assert_allclose(a.saliency, b.saliency, atol=1e-4)
    else:
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


@pytest.mark.parametrize("task, family", params([(t, f) for t in ("seg", "sod", "det") for f in FAMILIES],
                                                 in_ci=[("seg", "vit"), ("sod", "vit")]))
def test_onnxruntime_reproduces_torch(task, family, tmp_path):  # det on ViT in CI: the CLI export of a run below
    module = module_of(task, family)
    size = {"seg": (64, 96) if family == "vit" else (96, 128), "sod": None, "det": (128, 160)}[task]
    report = export_module(module, tmp_path / "m.onnx", size=size)
    enforced = [c for c in report.checks if c["enforced"]]
    assert enforced and all(c["max_abs_diff"] <= c["limit"] for c in enforced), report.format()
    if task == "det":
        assert {c["what"] for c in enforced} >= {"detection boxes (px)", "detection scores"}
    # the Predictor over the file gives what the torch Predictor gives, on an image the graph takes after the resize
    torch_p, onnx_p = Predictor.from_module(module), Predictor.from_onnx(tmp_path / "m.onnx")
    assert onnx_p.backend.fixed_size == tuple(report.size)
    hw = {"seg": report.size, "sod": (70, 90), "det": (120, 150)}[task]  # det: 120x150 -> 128x160 after the resize
    vis, ir = _images(*hw)
    assert_same_prediction(task, torch_p.predict(vis, ir), onnx_p.predict(vis, ir))


# --dynamic per task and family: ViT and EVA trace symbolic sizes; the data.size override gives EVA's SOD run a
# fixed resize that is a multiple of its patch 14 (the Predictor resizes to it; the graph itself stays dynamic)
EVA = ["model.backbone=eva02_tiny_patch14_224", "model.timm_kwargs={depth: 2, embed_dim: 64, num_heads: 2}"]
DYNAMIC = {"vit": {"seg": [], "sod": [], "det": []},
           "eva": {"seg": EVA, "sod": EVA + ["data.size=[84, 112]"], "det": EVA}}


@pytest.mark.parametrize("task, family", params([(t, f) for t in ("seg", "sod", "det") for f in DYNAMIC], in_ci=[]))
def test_dynamic_sizes_where_supported(task, family, tmp_path):
    module = module_of(task, "vit", *DYNAMIC[family][task])
    report = export_module(module, tmp_path / "dyn.onnx", dynamic=True)
    sizes = {tuple(c["size"]) for c in report.checks}
    assert report.size is None and len(sizes) == 2, report.format()  # onnxruntime checked at two sizes
    (h, w), (h2, w2) = sorted(sizes)
    assert h2 > h and w2 / h2 != w / h  # another size and another aspect ratio
    enforced = [c for c in report.checks if c["enforced"]]
    assert enforced and all(c["max_abs_diff"] <= c["limit"] for c in enforced), report.format()
    what = {"seg": {"logits"}, "sod": {"saliency"}, "det": {"detection boxes (px)", "detection scores"}}[task]
    assert {c["what"] for c in enforced} >= what
    if task == "det":  # equal detections after NMS, and some detections to compare
        assert all(c["detections"] > 0 for c in report.checks if c["what"] == "detection boxes (px)")
    p = Predictor.from_onnx(tmp_path / "dyn.onnx")
    assert p.backend.fixed_size is None
    # the Predictor over the dynamic graph matches torch on images of both sizes (after the run's own resize)
    torch_p = Predictor.from_module(module)
    for hw in sorted(sizes):
        vis, ir = _images(*hw, seed=hw[0])
        assert_same_prediction(task, torch_p.predict(vis, ir), p.predict(vis, ir))


@pytest.mark.parametrize("task", ["seg", "sod", "det"])
def test_dynamic_is_refused_for_swin_with_the_fix(task, tmp_path):
    # Swin's shifted windows fix the traced sizes: refused before tracing, naming the family and --size H W
    with pytest.raises(ExportError, match=r"--dynamic is not supported for swin_tiny_patch4_window7_224 .*the swin "
                                          r"backbone family .*window.*--size H W \(multiples of \d+\)"):
        export_module(module_of(task, "swin"), tmp_path / "swin.onnx", dynamic=True)
    assert not list(tmp_path.iterdir())


@SLOW
@pytest.mark.parametrize("task", ["seg", "sod"])
def test_fp16_export_is_half_inside_and_close_to_fp32_torch(task, tmp_path):
    from ivtune.runner.export import FP16_RTOL, example_inputs
    from ivtune.runner.predictor import TorchBackend, deployment_of

    module = module_of(task, "vit")
    size = {"seg": (64, 96), "sod": None}[task]
    report = export_module(module, tmp_path / "h.onnx", size=size, fp16=True)
    assert report.fp16 and ", fp16" in report.format()
    model = onnx.load(str(tmp_path / "h.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["ivtune.precision"] == "fp16"
    weights = [t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 64]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)  # the weights are half
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [onnx.TensorProto.FLOAT] * 2
    # onnxruntime's fp16 graph against the fp32 torch model, within the documented relative tolerance
    vis, ir = example_inputs(tuple(report.size), deployment_of(task).inputs(module).ir_channels, seed=7)
    ref = TorchBackend(deployment_of(task).graph(module))(vis, ir)
    got = OnnxBackend(tmp_path / "h.onnx")(vis, ir)
    for name, r in ref.items():
        diff = float((got[name] - r).abs().max())
        assert 0 < diff <= FP16_RTOL * max(1.0, float(r.abs().max())), (name, diff)  # > 0: really not fp32


def test_unexportable_head_and_bad_size_are_named(tmp_path):
    with pytest.raises(ExportError, match="model.head fasterrcnn cannot be exported.*fcos or retinanet"):
        export_module(module_of("det", "vit", "model.head=fasterrcnn"), tmp_path / "f.onnx", size=(128, 160))
    with pytest.raises(ExportError, match=r"--size 70 90 is not a multiple of 16 .*--size 80 96"):
        export_module(module_of("seg", "vit"), tmp_path / "s.onnx", size=(70, 90))
    with pytest.raises(ExportError, match="--size H W"):
        export_module(module_of("seg", "vit"), tmp_path / "s.onnx")
    assert not list(tmp_path.iterdir())


def test_corrupted_and_foreign_files_are_named_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all")
    with pytest.raises(OnnxModelError, match="cannot be loaded as an ONNX model"):
        Predictor.from_onnx(bad)
    with pytest.raises(OnnxModelError, match="not found"):
        Predictor.from_onnx(tmp_path / "missing.onnx")
    from onnx import TensorProto, helper

    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 4, 4]) for n in ("vis", "ir", "y")]
    graph = helper.make_graph([helper.make_node("Add", ["vis", "ir"], ["y"])], "foreign", value[:2], value[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    with pytest.raises(OnnxModelError, match="no ivtune metadata .* foreign ONNX model"):
        Predictor.from_onnx(tmp_path / "foreign.onnx")


@pytest.fixture(scope="module")
def det_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    return train(CONFIGS["det"], [f"train.output_dir={tmp}", "train.run_name=det", "train.max_steps=3",
                                  "train.val_every=3", "train.checkpoint_every=3", "data.num_samples=6",
                                  "data.batch_size=2"])


@pytest.fixture(scope="module")
def det_onnx(det_run, tmp_path_factory) -> tuple[Path, str]:
    """``ivtune export RUN --size 128 192``, read by the three tests below (`make test` runs a file on one worker).

    640x480 MSRS pairs -> the run's resize (short side 128, long side capped at 224) -> 128x171, padded to 128x192.
    """
    out = tmp_path_factory.mktemp("det_onnx") / "det.onnx"
    res = CliRunner().invoke(main, ["export", str(det_run), "--format", "onnx", "--out", str(out),
                                    "--size", "128", "192"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_cli_export_writes_and_reports(det_run, det_onnx, tmp_path):
    out, output = det_onnx
    assert "onnx.checker ok" in output and "detection boxes (px)" in output and "128x192, opset 23" in output
    res = CliRunner().invoke(main, ["export", str(det_run), "--out", str(tmp_path / "x.onnx"), "--size", "100", "160"])
    assert res.exit_code == 2 and "error: --size 100 160 is not a multiple of 32" in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_metadata_describes_the_graph(det_onnx):
    model = onnx.load(str(det_onnx[0]))
    meta = {p.key: p.value for p in model.metadata_props}
    inputs = json.loads(meta["ivtune.inputs"])
    assert meta["ivtune.format"] == "ivtune-onnx/1" and meta["ivtune.task"] == "det"
    assert json.loads(meta["ivtune.class_names"]) == ["person", "car", "bike"]  # the synthetic detection classes
    assert inputs["vis_mean"] == pytest.approx([0.485, 0.456, 0.406]) and inputs["ir_channels"] == 3
    assert inputs["short_side"] == 128 and inputs["max_size"] == 224 and inputs["pad_multiple"] == 32
    assert "decode_dense" in meta["ivtune.postprocess"] and meta["ivtune.size"] == "128x192"
    assert meta["ivtune.precision"] == "fp32" and meta["ivtune.source"].endswith("det")
    assert [i.name for i in model.graph.input] == ["vis", "ir"]
    shapes = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert shapes == [[1, 3, 128, 192], [1, 3, 128, 192]]
    with pytest.raises(Exception, match="128x218 after the run's resize .* --size 128 224"):
        Predictor.from_onnx(det_onnx[0]).predict(*_images(100, 170))  # wider than the graph


@SLOW
def test_cli_export_fp16(det_run, tmp_path):
    res = CliRunner().invoke(main, ["export", str(det_run), "--out", str(tmp_path / "h.onnx"), "--size", "128", "160",
                                    "--fp16"])
    assert res.exit_code == 0, res.output
    assert "128x160, opset 23, fp16" in res.output and "cls_logits max |diff|" in res.output
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "h.onnx")).metadata_props}
    assert meta["ivtune.precision"] == "fp16"


@pytest.mark.shared
@requires_shared(MSRS)
def test_onnx_reproduces_the_run_on_real_msrs_pairs(det_run, det_onnx, tmp_path):
    from ivtune.runner.predict import match_pairs

    torch_p, onnx_p = Predictor.from_run(det_run), Predictor.from_onnx(det_onnx[0])
    assert onnx_p.spec == torch_p.spec and onnx_p.info == torch_p.info
    pairs = match_pairs(MSRS / "vis", MSRS / "ir")
    assert len(pairs) == 20
    total = 0
    for _, vis, ir in pairs:
        a, b = torch_p.predict(vis, ir), onnx_p.predict(vis, ir)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        assert a.boxes[:, 2].max(initial=0) <= 640 and a.boxes[:, 3].max(initial=0) <= 480  # MSRS pixels
        total += len(a.labels)
    assert total > 0
    # `ivtune predict` over the ONNX file writes what it writes over the run
    from ivtune.runner.predict import predict_pairs

    one = tmp_path / "one"
    (one / "vis").mkdir(parents=True)
    (one / "ir").mkdir()
    for sub in ("vis", "ir"):
        (one / sub / "00004N.png").write_bytes((MSRS / sub / "00004N.png").read_bytes())
    a = predict_pairs(det_run, one / "vis", one / "ir", tmp_path / "a")
    b = predict_pairs(None, one / "vis", one / "ir", tmp_path / "b", onnx=det_onnx[0])
    ja = json.loads((tmp_path / "a" / "detections.json").read_text())["detections"]
    jb = json.loads((tmp_path / "b" / "detections.json").read_text())["detections"]
    assert [p.name for p in a] == [p.name for p in b] and len(ja) == len(jb)
    assert [d["category_id"] for d in ja] == [d["category_id"] for d in jb]


def test_example_inputs_are_fixed():
    from ivtune.runner.export import example_inputs

    a, b = example_inputs((32, 48), 1), example_inputs((32, 48), 1)
    assert torch.equal(a[0], b[0]) and a[1].shape == (1, 1, 32, 48)


def test_cli_opset_default_is_the_exporters():
    from ivtune.cli import export
    from ivtune.runner.export import DEFAULT_OPSET

    (opset,) = [p for p in export.params if p.name == "opset"]
    assert opset.default == DEFAULT_OPSET == 23  # 23: attention exports as ONNX's fused Attention op
