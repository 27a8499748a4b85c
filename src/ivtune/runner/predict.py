"""Prediction on user image pairs with a trained run; what is written depends on the task."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DataError

log = logging.getLogger("ivtune")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def match_pairs(vis: str | Path, ir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(name, vis_file, ir_file)`` for two files, or for two folders matched by file stem.

    The pairing rules of the datasets (:func:`ivtune.data.layout.index_dir`): an image of either folder without a
    partner in the other is an error listing them all, as are two images of one folder with the same stem (which to
    use cannot be guessed); files that are not images are left out and counted in a warning.
    """
    from ..data.layout import index_dir

    vis, ir = Path(vis), Path(ir)
    if vis.is_file() != ir.is_file():
        raise DataError(f"--vis {vis} and --ir {ir} must both be files or both be folders.")
    if vis.is_file():
        return [(vis.stem, vis, ir)]
    v, r = index_dir(vis), index_dir(ir)
    for folder, images in ((vis, v), (ir, r)):
        others = sorted(p.name for p in folder.iterdir() if p.is_file() and p not in images.values())
        if others:
            shown = ", ".join(others[:10]) + (" ..." if len(others) > 10 else "")
            log.warning("predict: %d file(s) in %s are not images (%s) and are not used: %s", len(others), folder,
                        ", ".join(sorted(IMAGE_SUFFIXES)), shown)
    if not v and not r:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {vis} or {ir}")
    lonely = [(f"{len(names)} visible image(s) have no infrared partner in {ir}", [v[n] for n in names])
              for names in [sorted(set(v) - set(r))] if names]
    lonely += [(f"{len(names)} infrared image(s) have no visible partner in {vis}", [r[n] for n in names])
               for names in [sorted(set(r) - set(v))] if names]
    if lonely:
        detail = "; ".join(f"{what}: {', '.join(map(str, files[:10]))}{' ...' if len(files) > 10 else ''}"
                           for what, files in lonely)
        raise DataError(f"{detail}. Pairs are matched by file name without extension; add the partners, or move "
                        "the unpaired files out of the folders.")
    return [(name, v[name], r[name]) for name in sorted(v)]


def predict_pairs(run: str | Path, vis: str | Path, ir: str | Path, out_dir: str | Path,
                  device: str = "cpu", onnx: str | Path | None = None) -> list[Path]:
    """Run a trained run's model on image pairs (two files, or two folders matched by file name) and write the
    task's outputs into ``out_dir``; returns the main output file of each pair.

    The model is a :class:`ivtune.runner.predictor.Predictor` (the one prediction path): the run's own in torch
    on ``device``, or the exported ``onnx`` file over onnxruntime (``run`` is then unused and may be None).
    """
    from ..tasks import get_task
    from .predictor import Predictor

    pairs = match_pairs(vis, ir)
    predictor = Predictor.from_onnx(onnx) if onnx is not None else Predictor.from_run(run, device=device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get_task(predictor.task).predict(predictor, pairs, out)
