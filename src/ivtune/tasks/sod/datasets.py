"""RGB-T salient object detection datasets: VT5000, VT1000, VT821, a generic folder tree and synthetic scenes.

Layouts under ``root`` (pairs matched by file stem, any image extension):

=============  =============================================  ====================================
dataset        layout                                          splits
=============  =============================================  ====================================
``vt5000``     ``{Train,Test}/{RGB,T,GT}/NAME.*``              ``train``, ``val``, ``trainval``, ``test``
``vt1000``     ``{RGB,T,GT}/NAME.*``                           ``test``
``vt821``      ``{RGB,T,GT}/NAME.*``                           ``test``
``folders``    ``{split}/{vis,ir,saliency}/NAME.*``            the sub-folders (+ ``val`` when carved)
``synthetic``  none: :func:`ivtune.data.synthetic.make_scene`   ``train``, ``val``, ``test``
=============  =============================================  ====================================

VT5000 has no validation split. With ``val_fraction > 0`` a fixed, seeded subset of ``Train`` becomes ``val`` and
``train`` is the rest (``trainval`` is all of ``Train``), so the model is never selected on a test split. The same
option carves ``val`` out of the ``train`` folder of a ``folders`` tree.

Samples follow :mod:`ivtune.data.pairs` with a saliency ``mask``: FloatTensor (1, H, W) in {0, 1} at the
transformed size; ``meta`` has ``name``, ``vis_path``, ``ir_path``, ``gt_path``, ``orig_size`` (H, W of the files),
``dataset`` (``"vt5000/test"``: the key metrics are reported under) and, for evaluation, ``gt``: the binary mask at
the original size (uint8 0/1), which the metrics use. Ground truth is binarised as py_sod_metrics does
(``value > 128``), so anti-aliased or JPEG-damaged masks are handled; thermal images are read as grey.

Terms: VT821 / VT1000 / VT5000 ship without a licence statement in the repositories read; treat them as
research-only and do not redistribute them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, DataError
from .check import ScanReport
from .datasets._layout import pair_by_stem, require_dir
from .io import read_gray
from .pairs import PairedSegDataset, PairRecord, Transform, pair_size_problem
from .synthetic import SyntheticSegDataset

GT_THRESHOLD = 128  # foreground is value > 128, as py_sod_metrics.utils.prepare_data binarises ground truth
SOD_CLASSES = ("background", "salient")


def binarize_gt(gt: np.ndarray) -> np.ndarray:
    """uint8 (H, W) in {0, 1} from a grey ground-truth image (0..255, or 0/1 masks as stored by some tools)."""
    if gt.size and gt.max() <= 1:
        return gt.astype(np.uint8)  # already 0/1
    return (gt > GT_THRESHOLD).astype(np.uint8)


def read_gt(path: str | Path) -> np.ndarray:
    """A saliency ground-truth file as a binary uint8 (H, W) array (colour files are converted to grey first)."""
    return binarize_gt(read_gray(path))


def gt_size_problem(rec: PairRecord, vis_shape: tuple[int, ...], gt_shape: tuple[int, ...]) -> str | None:
    """The GT-size-mismatch message naming both files, or None."""
    if tuple(vis_shape[:2]) == tuple(gt_shape[:2]):
        return None
    return (f"GT size mismatch in pair {rec.name!r}: ground truth {rec.label_path} is {tuple(gt_shape[:2])} (H, W) "
            f"but image {rec.vis_path} is {tuple(vis_shape[:2])}. Fix the pairing, or set data.options.resize_gt: "
            "true to resize ground truth to the image.")


def resize_gt(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to ``size`` (H, W): bilinear on 0/255, then the same threshold."""
    img = Image.fromarray((gt * 255).astype(np.uint8), "L").resize((size[1], size[0]), Image.BILINEAR)
    return binarize_gt(np.asarray(img))


class SaliencyDataset(PairedSegDataset):
    """VIS / IR / saliency-GT triples; see the module docstring for the sample.

    Args:
        records: the pairs (``label_path`` is the GT file; None for unlabelled pairs).
        transform: :func:`ivtune.data.sod_transforms.build_sod_transforms` or None ([0, 1] tensors).
        strict: raise a :class:`DataError` listing every missing file (``False`` keeps them for :meth:`scan`).
        name: ``"dataset/split"``, the key of the metrics.
        resize_gt: resize ground truth of another size than its image instead of raising.
        keep_gt: put the original-size binary GT into ``meta["gt"]`` (evaluation).
        ir_high_depth: scaling of >8-bit thermal files, see :func:`ivtune.data.io.read_gray`.
    """

    def __init__(self, records: Sequence[PairRecord], transform: Transform | None = None, strict: bool = True,
                 name: str = "sod", resize_gt: bool = False, keep_gt: bool = False,
                 ir_high_depth: str = "minmax") -> None:
        self.resize_gt = bool(resize_gt)
        self.keep_gt = bool(keep_gt)
        super().__init__(records, SOD_CLASSES, [(0, 0, 0), (255, 255, 255)], 255, transform, strict, name,
                         ir_high_depth)

    def files(self, index: int) -> list[tuple[str, str]]:
        rec = self.records[index]
        out = [("vis", rec.vis_path), ("ir", rec.ir_path)]
        if rec.label_path is not None:
            out.append(("gt", rec.label_path))
        return out

    def read_label(self, index: int) -> np.ndarray | None:
        """The binary GT (uint8 0/1) of record ``index`` at its file size, or None."""
        path = self.records[index].label_path
        return None if path is None else read_gt(path)

    def load_raw(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        vis, ir = self.read_images(index)
        problem = pair_size_problem(rec, vis.shape, ir.shape)
        if problem is not None:
            raise DataError(problem)
        gt = self.read_label(index)
        if gt is not None and gt.shape[:2] != vis.shape[:2]:
            if not self.resize_gt:
                raise DataError(gt_size_problem(rec, vis.shape, gt.shape))
            gt = resize_gt(gt, vis.shape[:2])
        sample: dict[str, Any] = {"vis": vis, "ir": ir}
        if gt is not None:
            sample["mask"] = gt
        sample["meta"] = {"name": rec.name, "vis_path": rec.vis_path, "ir_path": rec.ir_path,
                          "gt_path": rec.label_path, "label_path": rec.label_path, "condition": rec.condition,
                          "orig_size": (int(vis.shape[0]), int(vis.shape[1])), "dataset": self.name}
        if self.keep_gt and gt is not None:
            sample["meta"]["gt"] = gt
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = super().__getitem__(index)
        if isinstance(out.get("mask"), torch.Tensor) and not out["mask"].is_floating_point():
            m = out["mask"].float()
            out["mask"] = m[None] if m.ndim == 2 else m  # the contract: (1, H, W) float even without a transform
        return out

    def scan(self) -> ScanReport:
        """Every record checked, every problem collected: missing / unreadable files, VIS/IR and GT sizes."""
        report = ScanReport(dataset=self.name, num_pairs=len(self))
        report.conditions = dict(Counter(c or "unknown" for c in self.conditions))
        for i, rec in enumerate(self.records):
            before = len(report.problems)
            missing = dict(self.missing_files(i))
            for role, path in missing.items():
                report.problems.append(("missing", path, f"{role} file of pair {rec.name!r} not found "
                                                         f"(vis {rec.vis_path})"))
            arrays = {}
            for role, reader, path in (("vis", self.read_vis, rec.vis_path), ("ir", self.read_ir, rec.ir_path),
                                       ("gt", self.read_label, rec.label_path)):
                if path is None or role in missing:
                    continue
                try:
                    arrays[role] = reader(i)
                except DataError as exc:
                    report.problems.append(("unreadable", path, str(exc)))
            vis, ir, gt = arrays.get("vis"), arrays.get("ir"), arrays.get("gt")
            if vis is not None and ir is not None and (p := pair_size_problem(rec, vis.shape, ir.shape)):
                report.problems.append(("size_mismatch", rec.ir_path, p))
            if vis is not None and gt is not None and not self.resize_gt and (
                    p := gt_size_problem(rec, vis.shape, gt.shape)):
                report.problems.append(("gt_size_mismatch", rec.label_path, p))
            if len(report.problems) == before:
                report.num_ok += 1
        return report


class SyntheticSaliencyDataset(SaliencyDataset):
    """In-memory synthetic scenes with their ``saliency`` mask (warm objects); item ``i`` depends only on
    ``(seed, split, i)`` and equals the files :func:`ivtune.data.write_synthetic_dataset` writes."""

    def __init__(self, num_samples: int, seed: int = 0, height: int = 256, width: int = 320,
                 night_fraction: float = 0.5, fog_fraction: float = 0.0, transform: Transform | None = None,
                 split: str = "train", keep_gt: bool = False) -> None:
        self.scenes = SyntheticSegDataset(num_samples, seed, height, width, night_fraction, fog_fraction, split=split)
        super().__init__(self.scenes.records, transform, strict=True, name=f"synthetic/{split}", keep_gt=keep_gt)

    def files(self, index: int) -> list[tuple[str, str]]:
        return []  # nothing on disk

    def read_vis(self, index: int) -> np.ndarray:
        return self.scenes.scene(index).vis

    def read_ir(self, index: int) -> np.ndarray:
        return self.scenes.scene(index).ir

    def read_label(self, index: int) -> np.ndarray:
        return binarize_gt(self.scenes.scene(index).saliency)


# ---------------------------------------------------------------------------------------------------- layouts
def carve_val(records: list[PairRecord], split: str, val_fraction: float, val_seed: int,
              where: str) -> list[PairRecord]:
    """``train`` (the rest) / ``val`` (a seeded ``round(n * val_fraction)`` subset) / ``trainval`` (all)."""
    if split == "trainval":
        return records
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    if split == "val" and val_fraction == 0:
        raise ConfigError(f"{where} has no validation split: set data.options.val_fraction (e.g. 0.1) to hold out "
                          "part of the training pairs, or set data.val_split: null.")
    n_val = round(len(records) * val_fraction)
    order = np.random.default_rng([int(val_seed), 0x5A11]).permutation(len(records))
    val = set(order[:n_val].tolist())
    return [r for i, r in enumerate(records) if (i in val) == (split == "val")]


def _pairs(root: Path, folders: Sequence[str], what: str) -> list[PairRecord]:
    vis_dir = require_dir(root / folders[0], f"{what} visible")
    ir_dir = require_dir(root / folders[1], f"{what} thermal")
    gt_dir = require_dir(root / folders[2], f"{what} ground-truth")
    records = pair_by_stem(vis_dir, ir_dir, gt_dir, condition=lambda _: None)
    if not records:
        raise DataError(f"{what}: no images found in {vis_dir}.")
    return records


def build_vt5000(root: Path, split: str, *, folders: Sequence[str] = ("RGB", "T", "GT"), val_fraction: float = 0.0,
                 val_seed: int = 0, **kw: Any) -> SaliencyDataset:
    """VT5000 (Tu et al. 2022): 2,500 train / 2,500 test pairs, ``{Train,Test}/{RGB,T,GT}``."""
    base = require_dir(Path(root), "vt5000 root")
    part = "Test" if split == "test" else "Train"
    records = _pairs(require_dir(base / part, f"vt5000 {part}"), folders, f"vt5000 {part}")
    if split != "test":
        records = carve_val(records, split, val_fraction, val_seed, "vt5000")
    return SaliencyDataset(records, name=f"vt5000/{split}", **kw)


def _build_flat(name: str):
    def build(root: Path, split: str, *, folders: Sequence[str] = ("RGB", "T", "GT"), **kw: Any) -> SaliencyDataset:
        base = require_dir(Path(root), f"{name} root")
        return SaliencyDataset(_pairs(base, folders, name), name=f"{name}/{split}", **kw)

    build.__doc__ = f"{name.upper()}: a test-only set, ``{{RGB,T,GT}}`` at the root."
    return build


def build_folders(root: Path, split: str, *, folders: Sequence[str] = ("vis", "ir", "saliency"),
                  val_fraction: float = 0.0, val_seed: int = 0, **kw: Any) -> SaliencyDataset:
    """``{split}/{vis,ir,saliency}`` (what :func:`ivtune.data.write_synthetic_dataset` writes)."""
    base = require_dir(Path(root), "folders root")
    carved = val_fraction > 0 and split in ("train", "val", "trainval")
    folder = "train" if carved else split
    if not (base / folder / folders[0]).is_dir():
        found = sorted(p.name for p in base.iterdir() if (p / folders[0]).is_dir())
        raise ConfigError(f"split {split!r} not found under {base}; splits there (folders with a {folders[0]!r} "
                          f"sub-folder): {', '.join(found) or '(none)'}"
                          + ("" if split != "val" else "; or set data.options.val_fraction to carve one from train")
                          + ".")
    records = _pairs(base / folder, folders, f"folders/{folder}")
    if carved:
        records = carve_val(records, split, val_fraction, val_seed, f"folders {base}")
    return SaliencyDataset(records, name=f"folders/{split}", **kw)


def build_synthetic(root: Path | None, split: str, *, num_samples: int | None = None, seed: int = 0,
                    height: int = 256, width: int = 320, night_fraction: float = 0.5, fog_fraction: float = 0.0,
                    strict: bool = True, resize_gt: bool = False, keep_gt: bool = False,
                    ir_high_depth: str = "minmax") -> SaliencyDataset:
    """Synthetic scenes (no files); ``num_samples`` defaults to 400 / 100 / 100 for train / val / test."""
    n = {"train": 400, "val": 100, "test": 100}[split] if num_samples is None else int(num_samples)
    return SyntheticSaliencyDataset(n, seed, height, width, night_fraction, fog_fraction, split=split,
                                    keep_gt=keep_gt)


SOD_DATASETS: dict[str, tuple[Any, tuple[str, ...] | None]] = {
    "vt5000": (build_vt5000, ("train", "val", "trainval", "test")),
    "vt1000": (_build_flat("vt1000"), ("test",)),
    "vt821": (_build_flat("vt821"), ("test",)),
    "folders": (build_folders, None),
    "synthetic": (build_synthetic, ("train", "val", "test")),
}
_COMMON = {"strict", "resize_gt", "keep_gt", "ir_high_depth"}
_OPTIONS = {"vt5000": {"folders", "val_fraction", "val_seed"}, "vt1000": {"folders"}, "vt821": {"folders"},
            "folders": {"folders", "val_fraction", "val_seed"},
            "synthetic": {"num_samples", "seed", "height", "width", "night_fraction", "fog_fraction"}}


def build_sod_dataset(name: str, root: str | Path | None, split: str, transform: Transform | None = None,
                      **options: Any) -> SaliencyDataset:
    """Build an SOD dataset by name (a key of :data:`SOD_DATASETS`).

    Args:
        name: ``vt5000``, ``vt1000``, ``vt821``, ``folders`` or ``synthetic``.
        root: dataset folder (None for ``synthetic``).
        split: a split of that dataset (see the module docstring).
        transform: see :class:`SaliencyDataset`.
        **options: ``strict``, ``resize_gt``, ``keep_gt``, ``ir_high_depth``; ``folders`` (three folder names);
            ``val_fraction`` / ``val_seed`` (vt5000, folders); synthetic ``num_samples``, ``seed``, ``height``,
            ``width``, ``night_fraction``, ``fog_fraction``.

    Raises:
        ConfigError: unknown dataset, split or option; DataError: missing folders or files.
    """
    key = name.lower()
    if key not in SOD_DATASETS:
        raise ConfigError(f"unknown SOD dataset {name!r}; known: {', '.join(SOD_DATASETS)}.")
    build, splits = SOD_DATASETS[key]
    if splits is not None and split not in splits:
        raise ConfigError(f"unknown split {split!r} for SOD dataset {key!r}; valid splits: {', '.join(splits)}.")
    unknown = sorted(set(options) - _COMMON - _OPTIONS[key])
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(map(repr, unknown))} for SOD dataset {key!r}; accepted: "
                          f"{', '.join(sorted(_COMMON | _OPTIONS[key]))}.")
    if root is None and key != "synthetic":
        raise ConfigError(f"SOD dataset {key!r} needs a root folder; set data.root.")
    if "folders" in options and len(options["folders"]) != 3:
        raise ConfigError(f"option folders needs three names (visible, thermal, ground truth), got "
                          f"{options['folders']!r}.")
    ds = build(Path(root) if root is not None else None, split, **options)
    ds.transform = transform
    return ds


__all__ = ["GT_THRESHOLD", "SOD_DATASETS", "SaliencyDataset", "SyntheticSaliencyDataset", "binarize_gt",
           "build_sod_dataset", "carve_val", "read_gt"]
