"""The ``ivtune`` command line."""

from __future__ import annotations

import json
import sys

import click

from .errors import IVTuneError


class _Group(click.Group):
    """Turns ivtune errors into one clear line and exit code 2, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except IVTuneError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ivtune")
def main() -> None:
    """IV-tuning: frozen timm backbones for infrared + visible tasks (arXiv 2412.16654)."""


@main.command()
@click.argument("backbone")
@click.option("--method", default="iv-tuning", show_default=True, help="Training method (see ivtune.METHODS).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--timm-kwarg", "timm_kwargs", multiple=True, metavar="KEY=VALUE",
              help="A timm.create_model keyword, the value read as YAML, e.g. --timm-kwarg patch_size=16 "
              "(repeatable).")
def params(backbone: str, method: str, as_json: bool, timm_kwargs: tuple[str, ...]) -> None:
    """Trainable / frozen / total parameters of BACKBONE (a timm name), without downloading weights."""
    import torch

    from . import build_backbone, count_parameters

    kwargs = _parse_timm_kwargs(timm_kwargs)
    with torch.device("meta"):  # shapes only: seconds even for ViT-L, no memory, no download
        model = build_backbone(backbone, method=method, **kwargs)
    counts = count_parameters(model)
    if as_json:
        extra = {"timm_kwargs": kwargs} if kwargs else {}
        click.echo(json.dumps({"backbone": backbone, "method": method, **extra, **counts}))
        return
    click.echo(f"backbone   {backbone}")
    click.echo(f"method     {method}")
    if kwargs:
        click.echo(f"timm       {', '.join(f'{k}={v!r}' for k, v in kwargs.items())}")
    click.echo(f"trainable  {counts['trainable']:>13,}")
    click.echo(f"frozen     {counts['frozen']:>13,}")
    click.echo(f"total      {counts['total']:>13,}")
    click.echo(f"ratio      {counts['ratio']:>13.2%}  (trainable / pretrained backbone)")


def _parse_timm_kwargs(values: tuple[str, ...]) -> dict:
    """``("patch_size=16", "img_size=[480, 640]")`` -> ``{"patch_size": 16, "img_size": [480, 640]}`` (YAML values)."""
    import yaml

    kwargs: dict = {}
    for text in values:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"expected KEY=VALUE with a timm keyword as KEY, e.g. patch_size=16; got "
                                     f"{text!r}", param_hint="--timm-kwarg")
        if key in kwargs:
            raise click.BadParameter(f"{key!r} is given twice; pass each keyword once", param_hint="--timm-kwarg")
        try:
            kwargs[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise click.BadParameter(f"cannot read the value of {text!r} as YAML; quote it to pass a string",
                                     param_hint="--timm-kwarg") from None
    return kwargs



def _overrides(values: tuple[str, ...]) -> list[str]:
    return list(values)  # one KEY=VALUE per --set; values may contain spaces ("[256, 320]")


_set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                           help="Override a config key, e.g. --set train.max_steps=100 (repeatable).")


@main.command()
@click.argument("config_or_run", type=click.Path())
@_set_option
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint.")
def train(config_or_run: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Train from a YAML CONFIG (or resume the run directory CONFIG_OR_RUN with --resume)."""
    from .runner.run import train as run_train

    run_dir = run_train(config_or_run, _overrides(overrides), resume=resume)
    click.echo(f"run directory: {run_dir}")


@main.command(name="eval")
@click.argument("config_or_run", type=click.Path())
@click.option("--split", default=None, help="Split to evaluate (default: the config's test split).")
@_set_option
@click.option("--degrade", "degrade", multiple=True, metavar="SPEC",
              help="Also score under a sensor fault, e.g. ir:missing, vis:missing, vis:dark=2.5, vis:fog=0.6, "
              "vis:glare, ir:noise=10, ir:saturate, vis:blur=9, ir:blur=9, shift=8,0, rotate=3 (repeatable; "
              "docs/METHOD.md section 14).")
@click.option("--degrade-suite", is_flag=True, help="Also score under the standard suite of sensor faults.")
@click.option("--degrade-seed", default=0, show_default=True, type=int,
              help="Seed of the random faults (glare position, IR noise).")
def evaluate(config_or_run: str, split: str | None, overrides: tuple[str, ...], degrade: tuple[str, ...],
             degrade_suite: bool, degrade_seed: int) -> None:
    """Evaluate a trained run (its directory, or the config it was trained from).

    With --degrade / --degrade-suite, a robustness table (clean, each fault, absolute and relative drop, per
    condition) is added to eval/<split>/metrics.json and metrics.md, with robustness.png.
    """
    from .runner.run import evaluate as run_eval
    from .runner.run import evaluate_robustness, resolve
    from .tasks import get_task

    report = None
    if degrade or degrade_suite:
        report = evaluate_robustness(config_or_run, list(degrade), degrade_suite, split=split,
                                     overrides=_overrides(overrides), seed=degrade_seed)
        results = report.clean
    else:
        results = run_eval(config_or_run, split=split, overrides=_overrides(overrides))
    cfg, _ = resolve(config_or_run, _overrides(overrides))
    click.echo(get_task(cfg.task).format_results(results))
    if report is not None:
        click.echo(report.format())


@main.command()
@click.argument("run", type=click.Path(exists=True, file_okay=False))
@click.option("--vis", "vis_path", required=True, type=click.Path(exists=True), help="Visible image or folder.")
@click.option("--ir", "ir_path", required=True, type=click.Path(exists=True), help="Infrared image or folder.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
def predict(run: str, vis_path: str, ir_path: str, out_dir: str, device: str) -> None:
    """Predict with a trained RUN on image pairs matched by file name; writes masks, colour masks and overlays."""
    from .runner.predict import predict_pairs

    written = predict_pairs(run, vis_path, ir_path, out_dir, device=device)
    click.echo(f"{len(written)} pair(s) -> {out_dir}")


@main.command()
@click.argument("run", type=click.Path(exists=True))
@click.option("--format", "fmt", default="onnx", show_default=True, type=click.Choice(["onnx"]), help="Format.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="File to write (model.onnx).")
@click.option("--size", nargs=2, type=int, default=None, metavar="H W",
              help="Fixed input size after the run's resize (multiples of the patch size); default: the run's fixed "
              "resize (SOD).")
@click.option("--dynamic", is_flag=True, help="Symbolic input height and width instead of a fixed size.")
# the default is runner.export.DEFAULT_OPSET, written out so that --help does not import the export module
@click.option("--opset", default=23, show_default=True, type=int,
              help="ONNX opset (23: attention as one fused op).")
@click.option("--fp16", is_flag=True, help="Half-precision weights and arithmetic (float32 inputs / outputs).")
@_set_option
def export(run: str, fmt: str, out: str, size: tuple[int, int] | None, dynamic: bool, opset: int, fp16: bool,
           overrides: tuple[str, ...]) -> None:
    """Export a trained RUN to ONNX, checked with onnx.checker and against torch in onnxruntime."""
    from .runner.export import export_onnx

    report = export_onnx(run, out, size=size or None, dynamic=dynamic, opset=opset, fp16=fp16,
                         overrides=_overrides(overrides))
    click.echo(report.format())


# ------------------------------------------------------------------------------------------------ analyze
@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--split", default=None, help="Split to read (default: the config's test split).")
@click.option("--max-images", default=64, show_default=True, type=int, help="First N images of the split.")
@click.option("--tokens-per-image", default=256, show_default=True, type=int,
              help="Patch tokens sampled per image and block (0: all).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the token sampling.")
@click.option("--all-blocks", is_flag=True, help="Every block the backbone runs, not only the tapped ones.")
@click.option("--maps", is_flag=True, help="Also write PCA-colour and Grad-CAM maps (needs the analysis extra).")
@click.option("--maps-images", default=4, show_default=True, type=int, help="Images with maps (the first ones).")
@click.option("--cam-class", default=None, help="Segmentation: class name or index of the Grad-CAM map (default: "
              "per image, the most predicted class other than index 0).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Overlay folder for several runs (default FIRST_RUN/analysis/SPLIT/overlay).")
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda:0.")
def analyze(runs: tuple[str, ...], split: str | None, max_images: int, tokens_per_image: int, seed: int,
            all_blocks: bool, maps: bool, maps_images: int, cam_class: str | None, out_dir: str | None,
            device: str) -> None:
    """Feature rank of trained RUNS: per block, the spectrum of the patch tokens, effective rank and components for
    90 / 99 % of the variance, beside the frozen pretrained backbone; several RUNS are overlaid.

    Writes RUN/analysis/SPLIT/analysis.json, analysis.md, effective_rank.png, explained_variance.png (and maps/).
    """
    from .runner.analyze import AnalysisOptions
    from .runner.analyze import analyze as run_analyze

    options = AnalysisOptions(split=split, max_images=max_images, tokens_per_image=tokens_per_image, seed=seed,
                              all_blocks=all_blocks, maps=maps, maps_images=maps_images, cam_class=cam_class,
                              device=device)
    result = run_analyze(list(runs), options, out=out_dir)
    for entry in result["runs"]:
        last, ref = entry["blocks"][-1], entry["reference"]["blocks"][-1]
        click.echo(f"{entry['name']:<24} {last['block']}: effective rank {last['effective_rank']:6.1f} "
                   f"(reference {ref['effective_rank']:.1f}), 90 % in {last['components_90']} components")
    for name, files in result["files"].items():
        click.echo(f"{name}: {files['analysis.md'].parent}")


@main.group()
def data() -> None:
    """Dataset tools."""


@data.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@_set_option
@click.option("--split", "splits", multiple=True, help="Split(s) to scan (default: every split the config names).")
def check(config: str, overrides: tuple[str, ...], splits: tuple[str, ...]) -> None:
    """Scan a dataset: pairs, conditions, missing partners, unreadable files, size and label problems."""
    from .runner.datacheck import check_config

    ok = check_config(config, _overrides(overrides), list(splits) or None, echo=click.echo)
    sys.exit(0 if ok else 1)


@data.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--dataset", default="m3fd", show_default=True, type=click.Choice(["m3fd"]),
              help="Dataset whose layout ROOT has (datasets without an official split).")
@click.option("--seed", default=0, show_default=True, help="random.Random seed of the shuffle.")
@click.option("--train-fraction", default=0.8, show_default=True,
              type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="Share of the pairs that train, strictly between 0 and 1.")
@click.option("--force", is_flag=True, help="Replace existing split files that differ.")
def split(root: str, dataset: str, seed: int, train_fraction: float, force: bool) -> None:
    """Write ROOT/train.txt and ROOT/val.txt: sorted stems, seeded shuffle, first TRAIN_FRACTION train."""
    from .tasks.det.splits import write_split_files

    paths = write_split_files(root, dataset, seed=seed, train_fraction=train_fraction, force=force)
    for name, path in paths.items():
        click.echo(f"{name}: {sum(1 for _ in path.open())} stems -> {path}")


# ------------------------------------------------------------------------------------------------ score
@main.group()
def score() -> None:
    """Score prediction files against ground truth without a model (e.g. published results)."""


_out_option = click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
                           help="Folder for metrics.json / metrics.md / score.json (default runs/score/TASK/PRED).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def _report_score(result, pred: str, out_dir: str | None, as_json: bool) -> None:
    """Write the score files, then print the JSON object or the result lines, the unmatched files and the folder."""
    from pathlib import Path

    from .tasks import get_task

    out = result.write(out_dir or Path("runs") / "score" / result.task / Path(pred).resolve().stem)
    if as_json:
        click.echo(json.dumps({**result.full_summary(), "metrics_dir": str(out)}))
        return
    click.echo(get_task(result.task).format_results(result.results))
    for line in result.unmatched_lines():
        click.echo(line)
    click.echo(f"metrics: {out / 'metrics.md'}")


@score.command(name="det")
@click.argument("gt", type=click.Path(exists=True, dir_okay=False))
@click.argument("pred", type=click.Path(exists=True, dir_okay=False))
@click.option("--protocol", default=None, help="Miss-rate protocol: kaist-reasonable (KAIST default), kaist-all, "
              "caltech-reasonable. With COCO ground truth it adds the person miss rate to COCO AP.")
@click.option("--fppi-decimals", type=click.IntRange(0, 12), default=None,
              help="Round the 9 reference FPPI (4 = MLPD's script); default exact, as Dollar's toolbox.")
@click.option("--split", default=None, help="Split of a dataset config GT (default: its test split).")
@_set_option
@_out_option
@_json_option
def score_det(gt: str, pred: str, protocol: str | None, fppi_decimals: int | None, split: str | None,
              overrides: tuple[str, ...], out_dir: str | None, as_json: bool) -> None:
    """Detections PRED (COCO results .json or KAIST .txt) against GT (COCO json, KAIST annotation json, or a
    dataset config .yaml): COCO mAP / AP50 / AP75, and MR^-2 overall / day / night for KAIST."""
    from .runner.score import score_det as run

    result = run(gt, pred, split=split, overrides=_overrides(overrides), protocol=protocol,
                 fppi_decimals=fppi_decimals)
    _report_score(result, pred, out_dir, as_json)


@score.command(name="seg")
@click.argument("pred_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("label_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--classes", default=None, help="Class names in index order, comma-separated, or a classes.txt.")
@click.option("--dataset", default=None, help="Use this segmentation dataset's classes (mfnet, pst900, fmb ...).")
@click.option("--ignore-index", default=255, show_default=True, help="Label value left out of the metrics.")
@_out_option
@_json_option
def score_seg(pred_dir: str, label_dir: str, classes: str | None, dataset: str | None, ignore_index: int,
              out_dir: str | None, as_json: bool) -> None:
    """Class-id PNGs in PRED_DIR against labels in LABEL_DIR, matched by file stem: mIoU and per-class IoU."""
    from .runner.score import score_seg as run

    result = run(pred_dir, label_dir, classes=classes, dataset=dataset, ignore_index=ignore_index)
    _report_score(result, pred_dir, out_dir, as_json)


@score.command(name="sod")
@click.argument("map_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("gt_dir", type=click.Path(exists=True, file_okay=False))
@_out_option
@_json_option
def score_sod(map_dir: str, gt_dir: str, out_dir: str | None, as_json: bool) -> None:
    """Saliency maps in MAP_DIR against masks in GT_DIR, matched by file stem and resized to the mask size:
    S, weighted F, max / mean / adaptive F and E, MAE."""
    from .runner.score import score_sod as run

    result = run(map_dir, gt_dir)
    _report_score(result, map_dir, out_dir, as_json)


@main.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (data, runs, report.md).")
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="Local DINOv2-S (vit_small_patch14_dinov2) weights file; default: $IVTUNE_WEIGHTS.")
@click.option("--steps", default=None, type=click.IntRange(min=1),
              help="Optimiser steps per method, >= 1 (default 120 pretrained, 200 random-init).")
@click.option("--no-hub", is_flag=True, help="Do not try the timm hub for pretrained weights.")
def demo(out: str, weights: str | None, steps: int | None, no_hub: bool) -> None:
    """IV-tuning vs a visible-only baseline on synthetic day/night scenes; writes OUT/report.md."""
    from .runner.demo import run_demo

    run_demo(out, weights=weights, steps=steps, try_hub=not no_hub, echo=click.echo)


if __name__ == "__main__":
    main()
