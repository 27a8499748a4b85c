"""Prediction on user image pairs with a trained run: index masks, colour masks and overlays as PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data.io import read_gray, read_rgb
from .errors import DataError

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


def _palette_image(mask: np.ndarray, palette: list[tuple[int, int, int]]) -> Image.Image:
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    return img


def predict_pairs(run: str | Path, vis: str | Path, ir: str | Path, out_dir: str | Path,
                  device: str = "cpu") -> list[Path]:
    """Segment every pair; writes ``NAME_mask.png`` (palette PNG of class indices), ``NAME_color.png`` and
    ``NAME_overlay.png`` into ``out_dir``. Returns the mask paths."""
    from .engine.run import load_run_model, resolve
    from .tasks.seg import build_transforms, predict_logits
    from .viz import colorize_mask, overlay

    pairs = match_pairs(vis, ir)
    cfg, run_dir = resolve(run)
    task = load_run_model(cfg, run_dir)
    model = task.model.to(device).eval()
    transform = build_transforms(cfg, train=False, ignore_index=task.ignore_index)
    palette = task.palette
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, vis_file, ir_file in pairs:
        rgb, thermal = read_rgb(vis_file), read_gray(ir_file)
        if rgb.shape[:2] != thermal.shape[:2]:
            raise DataError(f"{vis_file} is {rgb.shape[1]}x{rgb.shape[0]} but {ir_file} is {thermal.shape[1]}x"
                            f"{thermal.shape[0]}; register / resize the IR image to the visible one.")
        sample = transform({"vis": rgb, "ir": thermal, "meta": {"name": name}}, rng=0)
        with torch.no_grad():
            logits = predict_logits(model, sample["vis"][None].to(device), sample["ir"][None].to(device))
        mask = logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
        _palette_image(mask, palette).save(out / f"{name}_mask.png")
        color = colorize_mask(mask, palette)
        Image.fromarray(color).save(out / f"{name}_color.png")
        Image.fromarray(overlay(rgb, color)).save(out / f"{name}_overlay.png")
        written.append(out / f"{name}_mask.png")
    (out / "classes.json").write_text(json.dumps({"classes": task.classes, "palette": palette}, indent=2) + "\n")
    return written
