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
def params(backbone: str, method: str, as_json: bool) -> None:
    """Trainable / frozen / total parameters of BACKBONE (a timm name), without downloading weights."""
    import torch

    from . import build_backbone, count_parameters

    with torch.device("meta"):  # shapes only: seconds even for ViT-L, no memory, no download
        model = build_backbone(backbone, method=method)
    counts = count_parameters(model)
    if as_json:
        click.echo(json.dumps({"backbone": backbone, "method": method, **counts}))
        return
    click.echo(f"backbone   {backbone}")
    click.echo(f"method     {method}")
    click.echo(f"trainable  {counts['trainable']:>13,}")
    click.echo(f"frozen     {counts['frozen']:>13,}")
    click.echo(f"total      {counts['total']:>13,}")
    click.echo(f"ratio      {counts['ratio']:>13.2%}  (trainable / pretrained backbone)")



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
def evaluate(config_or_run: str, split: str | None, overrides: tuple[str, ...]) -> None:
    """Evaluate a trained run (its directory, or the config it was trained from)."""
    from .runner.run import evaluate as run_eval
    from .runner.run import resolve
    from .tasks import get_task

    results = run_eval(config_or_run, split=split, overrides=_overrides(overrides))
    cfg, _ = resolve(config_or_run, _overrides(overrides))
    click.echo(get_task(cfg.task).format_results(results))


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
@click.option("--train-fraction", default=0.8, show_default=True, help="Share of the pairs that train.")
@click.option("--force", is_flag=True, help="Replace existing split files that differ.")
def split(root: str, dataset: str, seed: int, train_fraction: float, force: bool) -> None:
    """Write ROOT/train.txt and ROOT/val.txt: sorted stems, seeded shuffle, first TRAIN_FRACTION train."""
    from .tasks.det.splits import write_split_files

    paths = write_split_files(root, dataset, seed=seed, train_fraction=train_fraction, force=force)
    for name, path in paths.items():
        click.echo(f"{name}: {sum(1 for _ in path.open())} stems -> {path}")


@main.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Output folder (data, runs, report.md).")
@click.option("--weights", default=None, type=click.Path(dir_okay=False),
              help="Local DINOv2-S (vit_small_patch14_dinov2) weights file; default: $IVTUNE_WEIGHTS.")
@click.option("--steps", default=None, type=int, help="Optimiser steps per method (default 120 pretrained, 200 "
              "random-init).")
@click.option("--no-hub", is_flag=True, help="Do not try the timm hub for pretrained weights.")
def demo(out: str, weights: str | None, steps: int | None, no_hub: bool) -> None:
    """IV-tuning vs a visible-only baseline on synthetic day/night scenes; writes OUT/report.md."""
    from .runner.demo import run_demo

    run_demo(out, weights=weights, steps=steps, try_hub=not no_hub, echo=click.echo)


if __name__ == "__main__":
    main()
