"""Prediction on user image pairs with a trained run; what is written depends on the task."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def match_pairs(vis: str | Path, ir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(name, vis_file, ir_file)`` for two files, or for two folders matched by file stem."""
    vis, ir = Path(vis), Path(ir)
    if vis.is_file() != ir.is_file():
        raise DataError(f"--vis {vis} and --ir {ir} must both be files or both be folders.")
    if vis.is_file():
        return [(vis.stem, vis, ir)]

    def index(folder: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}

    v, r = index(vis), index(ir)
    missing = sorted(set(v) - set(r))
    if missing:
        shown = ", ".join(str(v[m]) for m in missing[:10])
        raise DataError(f"{len(missing)} visible image(s) have no infrared partner in {ir}: {shown}. Pairs are "
                        "matched by file name without extension.")
    if not v:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {vis}")
    return [(name, v[name], r[name]) for name in sorted(v)]


def predict_pairs(run: str | Path, vis: str | Path, ir: str | Path, out_dir: str | Path,
                  device: str = "cpu") -> list[Path]:
    """Run a trained run's model on image pairs (two files, or two folders matched by file name) and write the
    task's outputs into ``out_dir``; returns the main output file of each pair."""
    from ..tasks import get_task
    from .run import load_run_model, resolve

    pairs = match_pairs(vis, ir)
    cfg, run_dir = resolve(run)
    module = load_run_model(cfg, run_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get_task(cfg.task).predict(module, cfg, pairs, out, device=device)
