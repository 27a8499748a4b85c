"""``ivtune analyze``: the feature-rank analysis of the paper (does fine-tuning collapse the deep features into a
low-rank subspace?) and, with ``--maps``, where each model looks.

For every tapped block (every block with ``all_blocks``) of a trained run's backbone, on the images of one split:
the singular values of the centred patch-token matrix pooled over the images, its effective rank and the number
of principal components that explain 90 % and 99 % of the variance (:mod:`ivtune.runner.spectrum`); the same for
the frozen pretrained backbone on the visible image, the reference every method starts from. Several runs are
overlaid when they share a backbone and token grids.

Token sampling (documented in :data:`SAMPLING`): the first ``max_images`` images of the split in order, each
transformed as in evaluation and zero-padded (bottom / right) to the multiple the task model pads to; from each
image and block, ``tokens_per_image`` of the patch tokens inside the image (padding excluded) drawn uniformly
without replacement by :func:`~ivtune.runner.spectrum.sample_token_indices` with ``seed``. The positions depend only
on (seed, image index, grid), so the run and its reference, and every run of an overlay, see the same tokens.

Files, in ``RUN/analysis/<split>/`` (an overlay of several runs: also in ``--out``, default
``FIRST_RUN/analysis/<split>/overlay``)::

    analysis.json            settings, and per run and block: grid, tokens, width, spectrum, effective rank,
                             components for 90 % / 99 %; the reference's under "reference"
    analysis.md              the tables
    effective_rank.png       effective rank per block: run(s) and reference
    explained_variance.png   cumulative explained variance at the last analysed block
    maps/                    --maps: NAME_pca.png, NAME_pca_reference.png, NAME_cam.png (each at the image's size)
                             and NAME_panel.png (VIS | IR | PCA | PCA reference | CAM), maps.json
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from ..backbones.base import IVBackbone
from ..backbones.neck import pad_to_multiple
from ..builder import build_backbone
from ..config import Config
from ..errors import ConfigError, DataError
from ..tasks import Task, get_task
from .block_tokens import BlockInfo, BlockTokenReader, block_layout
from .run import DATASET_INFO, load_run_model, resolve
from .spectrum import max_rank, pca_basis, sample_token_indices, singular_values, summarise

log = logging.getLogger("ivtune")

FORMAT_VERSION = 1
SAMPLING = ("the first max_images images of the split in order, transformed as in evaluation and zero-padded to the "
            "task model's multiple; per image and block, tokens_per_image patch tokens inside the image (padding "
            "excluded) drawn uniformly without replacement (torch.randperm, generator seed = seed * 1000003 + image "
            "index; every token when the image has fewer); run, reference and every overlaid run see the same "
            "positions")


@dataclass(frozen=True)
class AnalysisOptions:
    """What ``ivtune analyze`` computes.

    Attributes:
        split: the split to read (default: the config's test split, else its validation split).
        max_images: images read from the split (the first ones, in order).
        tokens_per_image: patch tokens sampled per image and block (0: all).
        seed: seed of the token sampling.
        all_blocks: every block the backbone runs, not only the tapped ones.
        maps: write the PCA and Grad-CAM maps.
        maps_images: images with maps (the first ones).
        cam_class: segmentation: the class of the CAM (name or index; default: per image, see
            :mod:`ivtune.runner.maps`).
        device: torch device.
    """

    split: str | None = None
    max_images: int = 64
    tokens_per_image: int = 256
    seed: int = 0
    all_blocks: bool = False
    maps: bool = False
    maps_images: int = 4
    cam_class: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.max_images < 1:
            raise ConfigError(f"--max-images must be >= 1, got {self.max_images}.")
        if self.tokens_per_image < 0:
            raise ConfigError(f"--tokens-per-image must be >= 0 (0: every token), got {self.tokens_per_image}.")
        if self.maps_images < 1:
            raise ConfigError(f"--maps-images must be >= 1, got {self.maps_images}.")


# ---------------------------------------------------------------------------------------------------- one run
@dataclass
class _Run:
    """A run being analysed: its config, task, split dataset and trained model."""

    cfg: Config
    run_dir: Path
    task: Task
    split: str
    dataset: Any
    module: Any
    info: dict[str, Any]
    device: str

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def backbone(self) -> IVBackbone:
        return self.module.model.backbone

    @property
    def multiple(self) -> int:
        """The input multiple the task model pads to (detection: its ``size_divisible``)."""
        return int(getattr(self.module.model, "size_divisible", None) or self.backbone.input_multiple)


def _open_run(cfg: Config, run_dir: Path, options: AnalysisOptions) -> _Run:
    task = get_task(cfg.task)
    split = options.split or cfg.data.test_split or cfg.data.val_split
    if not split:
        raise ConfigError(f"{run_dir}: the config names no test or validation split; pass --split.")
    if options.cam_class is not None and options.maps and cfg.task != "seg":
        raise ConfigError(f"--cam-class applies to segmentation runs; {run_dir} is a {cfg.task!r} run (its map "
                          "follows " + ("the top detections" if cfg.task == "det" else "the saliency map") + ").")
    dataset = task.build_dataset(cfg, split, train=False)
    if len(dataset) == 0:
        raise DataError(f"split {split!r} of {cfg.data.dataset} ({cfg.data.root}) has no pairs: nothing to analyse.")
    info_file = run_dir / DATASET_INFO
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}  # load_run_model names a missing file
    if options.maps and options.cam_class is not None:
        from .maps import resolve_cam_class

        resolve_cam_class(options.cam_class, info.get("classes", []))  # a wrong class fails now, not after the pass
    module = load_run_model(cfg, run_dir, task).to(options.device)
    for branch in (m for m in module.modules() if isinstance(m, IVBackbone)):
        branch.set_grad_checkpointing(False)  # the maps' gradients are read with hooks; recomputation would repeat them
    return _Run(cfg, run_dir, task, split, dataset, module, info, options.device)


def reference_backbone(cfg: Config, device: str = "cpu") -> IVBackbone:
    """The frozen pretrained backbone of ``cfg`` on the visible image alone (no IR entry, no block modules).

    Seeded with ``train.seed`` first, as the run's model is: a random-init backbone (no weights in the config) then
    has the frozen weights the run was trained on.
    """
    m = cfg.model
    pl.seed_everything(cfg.train.seed, verbose=False)
    backbone = build_backbone(m.backbone, method="vis-only-full", pretrained=m.pretrained, weights=m.weights,
                              out_indices=m.out_indices, **m.timm_kwargs)
    backbone.requires_grad_(False)
    return backbone.to(device).eval()


def _reference_key(cfg: Config) -> str:
    m = cfg.model
    random_init = not m.pretrained and m.weights is None
    return json.dumps([m.backbone, m.weights, m.pretrained, dict(m.timm_kwargs), m.out_indices,
                       cfg.train.seed if random_init else None], sort_keys=True, default=str)


def _reference_description(cfg: Config) -> str:
    m = cfg.model
    if m.weights is not None:
        source = f"weights {Path(m.weights).name}"
    elif m.pretrained:
        source = "timm hub weights"
    else:
        source = f"random init, seed {cfg.train.seed} (the config loads no pretrained weights)"
    return f"frozen {m.backbone} ({source}) on the visible image"


def _analysed(layout: list[BlockInfo], all_blocks: bool) -> list[BlockInfo]:
    return [b for b in layout if all_blocks or b.tapped]


def _padded(sample: dict[str, Any], multiple: int, device: str) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """A sample as a batch of one, zero-padded to ``multiple``: (vis, ir, valid (h, w))."""
    vis, valid = pad_to_multiple(sample["vis"][None].float(), multiple)
    ir, _ = pad_to_multiple(sample["ir"][None].float(), multiple)
    return vis.to(device), ir.to(device), valid


def _inputs(run: _Run, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    return _padded(run.dataset[index], run.multiple, run.device)


def _valid_grid(grid: tuple[int, int], padded: tuple[int, int], valid: tuple[int, int]) -> tuple[int, int]:
    """The part of a block's grid that lies inside the image (cells are ``padded / grid`` pixels)."""
    return max(1, valid[0] * grid[0] // padded[0]), max(1, valid[1] * grid[1] // padded[1])


@dataclass(frozen=True)
class _Kept:
    """One image's tokens inside the image ``(vh, vw, C)`` at a block with grid ``(h, w)``, for the maps."""

    tokens: torch.Tensor
    grid: tuple[int, int]
    padded: tuple[int, int]
    valid: tuple[int, int]


@dataclass
class _Pool:
    """The sampled tokens of one backbone, per block; full grids of the first images for the maps."""

    tokens: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    grids: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    kept: dict[int, _Kept] = field(default_factory=dict)  # image index -> the last block's tokens inside the image

    def add(self, out: dict[str, tuple[torch.Tensor, tuple[int, int]]], labels: list[str], padded: tuple[int, int],
            valid: tuple[int, int], index: int, options: AnalysisOptions, keep: bool) -> None:
        missing = [lab for lab in labels if lab not in out]
        if missing:
            raise ConfigError(f"blocks {missing} did not run: the backbone stops at its last tapped block.")
        for lab in labels:
            tokens, grid = out[lab]
            vh, vw = _valid_grid(grid, padded, valid)
            inside = tokens[0].reshape(grid[0], grid[1], -1)[:vh, :vw]
            flat = inside.reshape(vh * vw, -1)
            idx = sample_token_indices(vh * vw, options.tokens_per_image, options.seed, index)
            self.tokens.setdefault(lab, []).append(flat[idx.to(flat.device)].float().cpu())
            self.grids.setdefault(lab, []).append(grid)
            if keep and lab == labels[-1]:
                self.kept[index] = _Kept(inside.float().cpu(), grid, padded, valid)

    def spectra(self, layout: list[BlockInfo], labels: list[str]) -> list[dict[str, Any]]:
        rows = []
        by_label = {b.label: b for b in layout}
        for lab in labels:
            x = torch.cat(self.tokens[lab])
            s = singular_values(x)
            grids = sorted(set(self.grids[lab]))
            rows.append({"block": lab, "index": by_label[lab].index, "tapped": by_label[lab].tapped,
                         "grid": list(self.grids[lab][0]), "grids": [list(g) for g in grids],
                         "dim": int(x.shape[1]), "tokens": int(x.shape[0]), "max_rank": max_rank(*x.shape),
                         **summarise(s), "singular_values": [round(float(v), 6) for v in s]})
        return rows


def backbone_spectra(backbone: IVBackbone, dataset: Any, multiple: int, options: AnalysisOptions) -> list[dict]:
    """The spectra of any backbone on ``dataset`` with the sampling of :data:`SAMPLING` (e.g. a network as
    initialised, before training): one row per analysed block, as in ``analysis.json``."""
    layout = block_layout(backbone)
    labels = [b.label for b in _analysed(layout, options.all_blocks)]
    pool = _Pool()
    with BlockTokenReader(backbone, labels) as reader:
        for i in range(min(len(dataset), options.max_images)):
            vis, ir, valid = _padded(dataset[i], multiple, options.device)
            pool.add(reader.read(vis, ir), labels, tuple(vis.shape[-2:]), valid, i, options, keep=False)
    return pool.spectra(layout, labels)


def _probe_layout(run: _Run, options: AnalysisOptions) -> dict[str, Any]:
    """The analysed blocks, their widths and their grids on the first image: what an overlay must share."""
    labels = [b.label for b in _analysed(block_layout(run.backbone), options.all_blocks)]
    vis, ir, _ = _inputs(run, 0)
    with BlockTokenReader(run.backbone, labels) as reader:
        out = reader.read(vis, ir)
    return {"labels": labels, "dims": {lab: int(out[lab][0].shape[-1]) for lab in labels if lab in out},
            "grids": {lab: out[lab][1] for lab in labels if lab in out}}


def check_backbones(resolved: list[tuple[Config, Path]]) -> None:
    """Raise :class:`ConfigError` when the runs' configs name different backbones (checked before loading any)."""
    (cfg0, dir0), *rest = resolved
    base = cfg0.model
    for cfg, run_dir in rest:
        m = cfg.model
        if (m.backbone, dict(m.timm_kwargs)) != (base.backbone, dict(base.timm_kwargs)):
            raise ConfigError(
                f"cannot overlay {dir0} and {run_dir}: their backbones differ ({base.backbone} "
                f"{dict(base.timm_kwargs)} vs {m.backbone} {dict(m.timm_kwargs)}). Effective ranks of different "
                "networks are not comparable block by block; analyse each backbone's runs separately.")


def check_overlay(runs: list[_Run], options: AnalysisOptions) -> None:
    """Raise :class:`ConfigError` when the loaded runs cannot be overlaid: other blocks, widths or token grids."""
    first = runs[0]
    probe0 = _probe_layout(first, options)
    for run in runs[1:]:
        probe = _probe_layout(run, options)
        if probe["labels"] != probe0["labels"]:
            raise ConfigError(
                f"cannot overlay {first.run_dir} and {run.run_dir}: they tap different blocks ({probe0['labels']} vs "
                f"{probe['labels']}, model.out_indices differ). Pass --all-blocks to compare every block.")
        for lab in probe0["labels"]:
            if probe["dims"].get(lab) != probe0["dims"].get(lab):
                raise ConfigError(f"cannot overlay {first.run_dir} and {run.run_dir}: block {lab} is "
                                  f"{probe0['dims'].get(lab)} wide in one and {probe['dims'].get(lab)} in the other.")
            g0, g = probe0["grids"].get(lab), probe["grids"].get(lab)
            if g != g0:
                raise ConfigError(
                    f"cannot overlay {first.run_dir} and {run.run_dir}: their token grids differ at {lab} "
                    f"({g0[0]}x{g0[1]} vs {g[0]}x{g[1]} on the first image of their splits {first.split!r} / "
                    f"{run.split!r}). Their inputs have other sizes (the data section's crop / resize sizes) or "
                    "patch sizes, so the pooled token matrices are not comparable. Analyse them separately, or "
                    "with the same data settings.")


def _analyse_run(run: _Run, options: AnalysisOptions, references: dict[str, tuple[IVBackbone, str]],
                 ref_cache: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """Spectra of one run and of its reference (computed once per reference and split); maps with ``maps``."""
    layout = block_layout(run.backbone)
    labels = [b.label for b in _analysed(layout, options.all_blocks)]
    key = _reference_key(run.cfg)
    if key not in references:
        references[key] = (reference_backbone(run.cfg, options.device), _reference_description(run.cfg))
    ref_backbone, ref_text = references[key]
    n = min(len(run.dataset), options.max_images)
    pool, ref_pool = _Pool(), _Pool()
    with BlockTokenReader(run.backbone, labels) as reader, BlockTokenReader(ref_backbone, labels) as ref_reader:
        for i in range(n):
            vis, ir, valid = _inputs(run, i)
            keep = options.maps and i < options.maps_images
            pool.add(reader.read(vis, ir), labels, tuple(vis.shape[-2:]), valid, i, options, keep)
            ref_pool.add(ref_reader.read(vis, ir), labels, tuple(vis.shape[-2:]), valid, i, options, keep)
    ref_id = (key, run.split)
    if ref_id not in ref_cache:
        label = "frozen, pretrained" if run.cfg.model.weights or run.cfg.model.pretrained else "frozen, random init"
        ref_cache[ref_id] = {"description": ref_text, "label": label, "blocks": ref_pool.spectra(layout, labels)}
    m = run.cfg.model
    entry = {"run": str(run.run_dir), "name": run.name, "task": run.cfg.task, "method": m.method,
             "backbone": m.backbone, "timm_kwargs": dict(m.timm_kwargs), "dataset": run.cfg.data.dataset,
             "split": run.split, "images": n, "blocks": pool.spectra(layout, labels),
             "reference": ref_cache[ref_id]}
    if options.maps:
        entry["maps"] = _write_maps(run, options, labels[-1], pool, ref_pool,
                                    run.run_dir / "analysis" / str(run.split) / "maps")
    return entry


# ---------------------------------------------------------------------------------------------------- maps
def _write_maps(run: _Run, options: AnalysisOptions, label: str, pool: _Pool, ref_pool: _Pool,
                out: Path) -> list[dict[str, Any]]:
    """PCA colours (run and reference) and Grad-CAM of the images ``pool`` kept, each at the image's size."""
    from PIL import Image

    from .maps import as_rgb, cam_overlay, grad_cam, pca_rgb, projection_range, to_image_size

    out.mkdir(parents=True, exist_ok=True)
    layers = BlockTokenReader(run.backbone).modules_at(label)
    classes = list(run.info.get("classes", []))
    bases = []
    for p in (pool, ref_pool):
        x = torch.cat(p.tokens[label])
        mean, comps = pca_basis(x, 3)
        bases.append((mean, comps, *projection_range(x, mean, comps)))
    written = []
    for i in sorted(pool.kept):
        raw = run.dataset.load_raw(i)
        name = str(raw["meta"]["name"])
        vis_rgb, ir_rgb = as_rgb(raw["vis"]), as_rgb(raw["ir"])
        size = tuple(vis_rgb.shape[:2])
        tiles: dict[str, np.ndarray] = {}
        for which, p, basis in (("pca", pool, bases[0]), ("pca_reference", ref_pool, bases[1])):
            kept = p.kept[i]
            full = np.zeros((*kept.grid, 3))  # cells outside the image (padding) stay black, then are cropped
            full[: kept.tokens.shape[0], : kept.tokens.shape[1]] = pca_rgb(kept.tokens, *basis)
            tiles[which] = (255 * to_image_size(full, kept.padded, kept.valid, size, "nearest")).round().astype(
                np.uint8)
        kept = pool.kept[i]
        vis, ir, valid = _inputs(run, i)
        cam, what = grad_cam(run.module.model, run.cfg.task, vis, ir, valid, layers, kept.grid, classes,
                             options.cam_class)
        tiles["cam"] = cam_overlay(vis_rgb, None if cam is None else to_image_size(cam, kept.padded, valid, size,
                                                                                   "bilinear"))
        files = {}
        for which, img in tiles.items():
            files[which] = f"{name}_{which}.png"
            Image.fromarray(img).save(out / files[which])
        files["panel"] = f"{name}_panel.png"
        panel = np.concatenate([vis_rgb, ir_rgb, tiles["pca"], tiles["pca_reference"], tiles["cam"]], axis=1)
        Image.fromarray(panel).save(out / files["panel"])
        written.append({"image": name, "index": i, "size": list(size), "block": label, "cam": what, "files": files})
    (out / "maps.json").write_text(json.dumps(written, indent=2) + "\n")
    return written


# ---------------------------------------------------------------------------------------------------- reports
def _settings(options: AnalysisOptions) -> dict[str, Any]:
    return {"max_images": options.max_images, "tokens_per_image": options.tokens_per_image, "seed": options.seed,
            "all_blocks": options.all_blocks, "sampling": SAMPLING,
            "effective_rank": "exp of the Shannon entropy (nats) of the singular values divided by their sum",
            "components": "smallest k whose k largest squared singular values hold 90 % / 99 % of their sum"}


def _curves(entries: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]], bool]]:
    """(legend, blocks, is_reference) for every run and every distinct reference, in order."""
    out = [(f"{e['name']} ({e['method']})", e["blocks"], False) for e in entries]
    refs = _references(entries)
    for k, ref in enumerate(refs):
        out.append((f"reference{f' {k + 1}' if len(refs) > 1 else ''} ({ref['label']})", ref["blocks"], True))
    return out


def _references(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct references of ``entries`` (one when the runs share backbone, weights and split)."""
    seen: list[dict[str, Any]] = []
    for e in entries:
        if not any(e["reference"] is r for r in seen):
            seen.append(e["reference"])
    return seen


def write_report(entries: list[dict[str, Any]], options: AnalysisOptions, out: Path) -> dict[str, Path]:
    """``analysis.json``, ``analysis.md``, ``effective_rank.png`` and ``explained_variance.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in ("analysis.json", "analysis.md", "effective_rank.png",
                                           "explained_variance.png")}
    payload = {"format": FORMAT_VERSION, "settings": _settings(options), "runs": entries}
    files["analysis.json"].write_text(json.dumps(payload, indent=1) + "\n")
    files["analysis.md"].write_text(format_markdown(entries, options))
    plot_effective_rank(entries, files["effective_rank.png"])
    plot_explained_variance(entries, files["explained_variance.png"])
    return files


def format_markdown(entries: list[dict[str, Any]], options: AnalysisOptions) -> str:
    """The report: effective rank per block (runs and reference), then the last block's spectrum summary."""
    first = entries[0]
    curves = _curves(entries)
    refs = _references(entries)
    lines = [f"# Feature rank: {', '.join(e['name'] for e in entries)}", "",
             f"- Split `{first['split']}` of `{first['dataset']}`: {first['images']} image(s), "
             f"{options.tokens_per_image or 'all'} token(s) per image and block, seed {options.seed}.",
             f"- Backbone `{first['backbone']}`; blocks: "
             f"{'every block that runs' if options.all_blocks else 'the tapped ones'}.",
             f"- Sampling: {SAMPLING}.",
             *(f"- Reference{f' {k + 1}' if len(refs) > 1 else ''}: {r['description']}." for k, r in enumerate(refs)),
             "- Effective rank: exp of the entropy of the normalised singular values of the centred token matrix "
             "(Roy & Vetterli 2007); its ceiling is the width of the block (or the token count, if smaller).", "",
             "## Effective rank per block", "",
             "| block | grid | width | " + " | ".join(legend for legend, _, _ in curves) + " |",
             "|---|---|---:|" + "---:|" * len(curves)]
    for k, blk in enumerate(first["blocks"]):
        tap = " (tap)" if blk["tapped"] and options.all_blocks else ""
        values = " | ".join(f"{blocks[k]['effective_rank']:.1f}" for _, blocks, _ in curves)
        lines.append(f"| {blk['block']}{tap} | {blk['grid'][0]}x{blk['grid'][1]} | {blk['dim']} | {values} |")
    last = first["blocks"][-1]["block"]
    lines += ["", f"## Last analysed block ({last})", "",
              "| | effective rank | components for 90 % | components for 99 % | tokens |", "|---|---:|---:|---:|---:|"]
    for legend, blocks, _ in curves:
        b = blocks[-1]
        lines.append(f"| {legend} | {b['effective_rank']:.1f} | {b['components_90']} | {b['components_99']} | "
                     f"{b['tokens']} |")
    lines += ["", "![effective rank per block](effective_rank.png)", "",
              "![cumulative explained variance](explained_variance.png)", ""]
    maps = [e for e in entries if e.get("maps")]
    for e in maps:
        lines += [f"## Maps of {e['name']} (block {e['maps'][0]['block']})", "",
                  "Panels: VIS | IR | PCA of the run | PCA of the reference | Grad-CAM, in "
                  f"`{Path(e['run']) / 'analysis' / e['split'] / 'maps'}`.", ""]
        lines += [f"- `{m['files']['panel']}`: CAM for {m['cam']}" for m in e["maps"]] + [""]
    return "\n".join(lines)


def _figure(width: float = 7.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height))


def plot_effective_rank(entries: list[dict[str, Any]], path: Path) -> None:
    """Effective rank per analysed block: one line per run, dashed for the reference."""
    plt, fig, ax = _figure(max(6.0, 0.5 * len(entries[0]["blocks"]) + 3), 4.0)
    labels = [b["block"] for b in entries[0]["blocks"]]
    x = np.arange(len(labels))
    for legend, blocks, is_ref in _curves(entries):
        ax.plot(x, [b["effective_rank"] for b in blocks], "k--" if is_ref else "-", marker="o", markersize=3,
                label=legend, linewidth=1.5)
    ax.set_xticks(x, [lab.replace("blocks.", "") for lab in labels], rotation=45 if len(labels) > 8 else 0,
                  fontsize=8)
    ax.set_xlabel("block")
    ax.set_ylabel("effective rank of the patch tokens")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{entries[0]['backbone']}, split {entries[0]['split']}, {entries[0]['images']} images", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_explained_variance(entries: list[dict[str, Any]], path: Path) -> None:
    """Cumulative explained variance over the number of components at the last analysed block."""
    from .spectrum import explained_variance

    plt, fig, ax = _figure()
    for legend, blocks, is_ref in _curves(entries):
        cum = explained_variance(torch.tensor(blocks[-1]["singular_values"], dtype=torch.float64)).numpy()
        ax.plot(np.arange(1, len(cum) + 1), cum, "k--" if is_ref else "-", label=legend, linewidth=1.5)
    for share in (0.9, 0.99):
        ax.axhline(share, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("principal components")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(f"block {entries[0]['blocks'][-1]['block']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------- entry point
def analyze(runs: list[str | Path], options: AnalysisOptions | None = None,
            out: str | Path | None = None) -> dict[str, Any]:
    """Analyse one or several trained runs (run directories or their configs); see the module docstring.

    Args:
        runs: run directories (``ivtune train`` output) or the configs they were trained from.
        options: what to compute (:class:`AnalysisOptions`).
        out: the overlay folder for several runs (default ``FIRST_RUN/analysis/<split>/overlay``).

    Returns:
        ``{"runs": [per-run entry], "files": {run name or "overlay": {file name: path}}}``.
    """
    options = options or AnalysisOptions()
    if not runs:
        raise ConfigError("give at least one run directory to analyse.")
    if options.maps:
        from .maps import require_grad_cam

        require_grad_cam()  # the missing extra is reported now, not after the spectra
    resolved = [resolve(r) for r in runs]
    names = [run_dir.resolve() for _, run_dir in resolved]
    if len(set(names)) != len(names):
        raise ConfigError(f"the same run is given twice: {[str(r) for r in runs]}.")
    if len(resolved) > 1:
        check_backbones(resolved)  # from the configs alone, before any model is loaded
    opened = [_open_run(cfg, run_dir, options) for cfg, run_dir in resolved]
    if len(opened) > 1:
        check_overlay(opened, options)  # before the long part: every run must fit the overlay
    references: dict[str, tuple[IVBackbone, str]] = {}
    ref_cache: dict[tuple[str, str], dict[str, Any]] = {}
    entries, files = [], {}
    for run in opened:
        log.info("analysing %s on split %s", run.run_dir, run.split)
        entry = _analyse_run(run, options, references, ref_cache)
        entries.append(entry)
        files[run.name] = write_report([entry], options, run.run_dir / "analysis" / str(run.split))
        run.module = None  # free the weights before the next run
    if len(entries) > 1:
        target = Path(out) if out is not None else opened[0].run_dir / "analysis" / str(opened[0].split) / "overlay"
        files["overlay"] = write_report(entries, options, target)
    return {"runs": entries, "files": files}


__all__ = ["AnalysisOptions", "SAMPLING", "analyze", "backbone_spectra", "check_backbones", "check_overlay",
           "reference_backbone", "write_report"]
