"""Figures for reports: coloured masks, overlays, training curves, per-class IoU bars and image grids.

Plots use matplotlib's object API on the Agg canvas (no pyplot state, no window, never ``show``), so they work in
headless jobs and threads. Images may be numpy arrays or torch tensors: (H, W) grey, (H, W, 3) or (3, H, W)
colour; uint8 as is, floats clipped to [0, 1] and scaled to 0-255.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataError, InputShapeError

# Lightning's CSVLogger bookkeeping columns: the x axis, not metrics
_NON_METRIC_COLUMNS = ("step", "epoch")


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def to_uint8_rgb(image: Any) -> np.ndarray:
    """(H, W), (H, W, 1|3) or (1|3, H, W) image, uint8 or float in [0, 1] -> (H, W, 3) uint8."""
    a = _to_numpy(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)  # CHW (a torch image) -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)  # grey (e.g. thermal) shown as RGB
    if a.ndim != 3 or a.shape[-1] != 3:
        raise InputShapeError(
            f"expected an image (H, W), (H, W, 3) or (3, H, W), got shape {a.shape}. Select one image of the batch."
        )
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        return (np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return np.clip(a, 0, 255).astype(np.uint8)
    raise InputShapeError(f"unsupported image dtype {a.dtype}; use uint8 or float in [0, 1].")


def colorize_mask(mask: Any, palette: Sequence[Sequence[int]] | np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Class-index mask -> colour image.

    Args:
        mask: (H, W) integer class indices (numpy or torch).
        palette: (K, 3) RGB colours 0-255, one per class.
        ignore_index: value drawn black.

    Returns:
        (H, W, 3) uint8.
    """
    m = _to_numpy(mask)
    if m.ndim != 2:
        raise InputShapeError(f"mask must be (H, W), got shape {m.shape}. Select one mask of the batch (mask[0]).")
    if not (np.issubdtype(m.dtype, np.integer) or m.dtype == bool):
        raise InputShapeError(f"mask must hold integer class indices, got {m.dtype}. Use mask.astype(np.int64).")
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3 or len(pal) == 0:
        raise ConfigError(f"palette must be (K, 3) RGB colours, got shape {pal.shape}.")
    m = m.astype(np.int64)
    ignored = m == ignore_index
    bad = ~ignored & ((m < 0) | (m >= len(pal)))
    if bad.any():
        raise InputShapeError(
            f"mask has values {np.unique(m[bad])[:10].tolist()} with no palette colour (palette has {len(pal)}) "
            f"and not equal to ignore_index ({ignore_index}). Extend the palette or map them to ignore_index."
        )
    # an extra black row at index K takes the ignored pixels in the same fancy-indexing pass
    lut = np.concatenate([np.clip(pal, 0, 255).astype(np.uint8), np.zeros((1, 3), np.uint8)])
    return lut[np.where(ignored, len(pal), m)]


def overlay(rgb: Any, color_mask: Any, alpha: float = 0.5) -> np.ndarray:
    """Blend a coloured mask over an image: ``(1 - alpha) * rgb + alpha * color_mask``.

    Args:
        rgb: the image (grey thermal images are shown as RGB); see the module docstring for formats.
        color_mask: (H, W, 3) from :func:`colorize_mask`, same height and width.
        alpha: mask opacity in [0, 1].

    Returns:
        (H, W, 3) uint8.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha!r}.")
    img, col = to_uint8_rgb(rgb), to_uint8_rgb(color_mask)
    if img.shape != col.shape:
        raise InputShapeError(
            f"image {img.shape[:2]} and mask {col.shape[:2]} must have the same height and width. Resize the mask "
            "(nearest) to the image."
        )
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * col.astype(np.float32)
    return (out + 0.5).astype(np.uint8)


def _new_figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure  # lazy: colorize/overlay users need not import matplotlib

    return Figure(figsize=figsize, layout="constrained")


def _save(fig: Any, out_png: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: no backend selection, no GUI
    fig.savefig(out, dpi=100)
    return out


def _float_or_none(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def plot_training_curves(csv_path: str | Path, out_png: str | Path) -> Path:
    """Plot every numeric column of a Lightning CSVLogger ``metrics.csv`` against ``step``, one subplot each.

    Lightning writes train and validation values on different rows, so cells are sparse; each metric is drawn
    from its non-empty cells only (validation curves are drawn with markers, as they are few points).

    Args:
        csv_path: the ``metrics.csv`` file.
        out_png: output image path (parent folders are created).

    Returns:
        The written path.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"metrics file {str(path)!r} not found; CSVLogger writes <log_dir>/metrics.csv.")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    metrics = [c for c in columns if c not in _NON_METRIC_COLUMNS]
    series: dict[str, tuple[list[float], list[float]]] = {}
    for name in metrics:
        xs, ys = [], []
        for i, row in enumerate(rows):
            y = _float_or_none(row.get(name))
            if y is None:
                continue
            x = _float_or_none(row.get("step"))
            xs.append(x if x is not None else float(i))  # no step column: row order is the best x we have
            ys.append(y)
        if ys:
            series[name] = (xs, ys)
    if not series:
        raise DataError(
            f"{str(path)!r} has no numeric metric columns (columns: {columns}, {len(rows)} rows). Log metrics "
            "with self.log(...) and a CSVLogger."
        )

    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig = _new_figure((4.0 * ncols, 3.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, (xs, ys)) in zip(axes, series.items(), strict=False):
        ax.plot(xs, ys, marker="o" if len(ys) <= 50 else None, markersize=3, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    return _save(fig, out_png)


def plot_per_class_iou(
    per_class: dict[str, Sequence[float]] | Sequence[float],
    class_names: Sequence[str],
    out_png: str | Path,
    title: str = "Per-class IoU (%)",
) -> Path:
    """Bar chart of per-class IoU; grouped bars when several models / conditions are given.

    Args:
        per_class: IoU per class in percent, or {series name (model, condition): IoU per class}. NaN (class absent)
            draws no bar.
        class_names: one name per class.
        out_png: output image path.
        title: figure title.

    Returns:
        The written path.
    """
    series = dict(per_class) if isinstance(per_class, dict) else {"": list(per_class)}
    names = [str(n) for n in class_names]
    if not series:
        raise ConfigError("per_class is empty: pass a list of IoUs or {name: list of IoUs}.")
    for key, values in series.items():
        if len(values) != len(names):
            raise ConfigError(
                f"per_class[{key!r}] has {len(values)} values but {len(names)} class names were given; "
                "pass one IoU per class in class-index order."
            )
    n = len(series)
    width = 0.8 / n
    x = np.arange(len(names))
    fig = _new_figure((max(6.0, 0.6 * len(names) * max(1, n / 2) + 2), 4.0))
    ax = fig.subplots()
    for j, (label, values) in enumerate(series.items()):
        heights = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
        ax.bar(x - 0.4 + width * (j + 0.5), heights, width, label=label or None)
    ax.set_xticks(x, names, rotation=45, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    if n > 1 or next(iter(series)):
        ax.legend(fontsize=8)
    return _save(fig, out_png)


def image_grid(rows: list[list[Any]], titles: Sequence[str], out_png: str | Path, cell_inches: float = 3.0) -> Path:
    """Save a grid of images, one sample per row, with column titles.

    Args:
        rows: ``rows[i][j]`` is the image of sample ``i`` in column ``j`` (e.g. VIS, IR, ground truth,
            visible-only, IV-tuning); formats as in the module docstring.
        titles: one title per column.
        out_png: output image path.
        cell_inches: width of one cell; the height follows the first image's aspect ratio.

    Returns:
        The written path.
    """
    if not rows or not rows[0]:
        raise ConfigError("rows is empty: pass a list of rows, each a list of images.")
    ncols = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != ncols:
            raise ConfigError(f"row {i} has {len(row)} images but row 0 has {ncols}; every row needs one per column.")
    if len(titles) != ncols:
        raise ConfigError(f"got {len(titles)} titles for {ncols} columns; pass one title per column.")
    images = [[to_uint8_rgb(im) for im in row] for row in rows]
    h, w = images[0][0].shape[:2]
    fig = _new_figure((cell_inches * ncols, cell_inches * h / w * len(rows) + 0.4))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for i, row in enumerate(images):
        for j, im in enumerate(row):
            ax = axes[i, j]
            ax.imshow(im, interpolation="nearest")  # nearest: masks keep hard class edges
            ax.set_axis_off()
            if i == 0:
                ax.set_title(str(titles[j]), fontsize=10)
    return _save(fig, out_png)
