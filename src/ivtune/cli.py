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


if __name__ == "__main__":
    main()
