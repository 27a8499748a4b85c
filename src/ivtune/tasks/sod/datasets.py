"""RGB-T salient object detection datasets: VT5000, VT1000, VT821, a generic folder tree and synthetic scenes.

Layouts under ``root`` (pairs matched by file stem, any image extension):

=============  =============================================  ====================================
dataset        layout                                          splits
=============  =============================================  ====================================
``vt5000``     ``{Train,Test}/{RGB,T,GT}/NAME.*``              ``train``, ``val``, ``trainval``, ``test``
``vt1000``     ``{RGB,T,GT}/NAME.*``                           ``test``
``vt821``      ``{RGB,T,GT}/NAME.*``                           ``test``
``folders``    ``{split}/{vis,ir,saliency}/NAME.*``            the sub-folders (+ ``val`` when carved)
``synthetic``  none: :func:`ivtune.data.scenes.make_scene`       ``train``, ``val``, ``test``
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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ...data.io import read_gray
from ...data.layout import pair_by_stem, require_dir
from ...data.pairs import PairedDataset, PairRecord, Transform
from ...data.registry import DatasetEntry, build_from_registry
from ...data.scan import ScanReport, size_problem
from ...data.scenes import SceneImages, SyntheticScenes
from ...errors import ConfigError, DataError

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
    return size_problem("GT size mismatch", rec, ("ground truth", rec.label_path, gt_shape),
                        ("image", rec.vis_path, vis_shape),
                        "Fix the pairing, or set data.resize_gt: true to resize ground truth to the image.")


def resize_gt(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to ``size`` (H, W): bilinear on 0/255, then the same threshold."""
    img = Image.fromarray((gt * 255).astype(np.uint8), "L").resize((size[1], size[0]), Image.BILINEAR)
    return binarize_gt(np.asarray(img))


class SaliencyDataset(PairedDataset):
    """VIS / IR / saliency-GT triples; see the module docstring for the sample.

    Args:
        records: the pairs (``label_path`` is the GT file; None for unlabelled pairs).
        transform: :func:`ivtune.tasks.sod.transforms.build_sod_transforms` or None ([0, 1] tensors).
        strict: raise a :class:`DataError` listing every missing file (``False`` keeps them for :meth:`scan`).
        name: ``"dataset/split"``, the key of the metrics.
        resize_gt: resize ground truth of another size than its image instead of raising.
        keep_gt: put the original-size binary GT into ``meta["gt"]`` (evaluation).
        ir_high_depth: scaling of >8-bit thermal files, see :func:`ivtune.data.io.read_gray`.
    """

    target_role = "gt"
    classes = SOD_CLASSES

    def __init__(self, records: Sequence[PairRecord], transform: Transform | None = None, strict: bool = True,
                 name: str = "sod", resize_gt: bool = False, keep_gt: bool = False,
                 ir_high_depth: str = "minmax") -> None:
        super().__init__(records, transform, strict, name, ir_high_depth)
        self.resize_gt = bool(resize_gt)
        self.keep_gt = bool(keep_gt)
        if strict:
            self._raise_on_missing()

    # ------------------------------------------------------------------ target hooks
    def read_target_file(self, path: str) -> np.ndarray:
        """The binary GT (uint8 0/1) at its file size."""
        return read_gt(path)

    def target_problems(self, index: int, vis_shape: tuple[int, ...], target: Any) -> list[tuple[str, str, str]]:
        rec = self.records[index]
        if not self.resize_gt and (problem := gt_size_problem(rec, vis_shape, target.shape)):
            return [("gt_size_mismatch", rec.label_path, problem)]
        return []

    def add_target(self, sample: dict[str, Any], index: int, target: Any) -> None:
        if target is None:
            return
        if target.shape[:2] != sample["vis"].shape[:2]:  # resize_gt (target_problems stopped the other case)
            target = resize_gt(target, sample["vis"].shape[:2])
        sample["mask"] = target

    def count_target(self, index: int, target: Any, vis_shape: tuple[int, ...]) -> None:
        rec = self.records[index]
        self.scan_counts["gts"] += 1
        self.scan_counts["salient"] += int(target.sum())
        self.scan_counts["empty"] += int(not target.any())
        if target.shape[:2] != tuple(vis_shape[:2]):  # only with resize_gt: target_problems stops it otherwise
            self.scan_files.append((rec.label_path, f"resized to the size of {rec.vis_path} (data.resize_gt)"))

    def scan_summary(self, report: ScanReport) -> None:
        """Salient pixels and empty maps counted, resized maps listed; no salient pixel at all is a problem."""
        c = self.scan_counts
        report.values.update(salient_pixels=int(c["salient"]), empty_gts=int(c["empty"]),
                             resized_gts=len(self.scan_files))
        report.counts.append(f"Ground truth: {c['gts']} map(s), {c['empty']} without a salient pixel; "
                             f"{len(self.scan_files)} resized to their image (data.resize_gt).")
        if self.scan_files:
            shown = ", ".join(p for p, _ in self.scan_files[:5]) + (" ..." if len(self.scan_files) > 5 else "")
            report.repairs.append(f"{self.name}: {len(self.scan_files)} ground-truth map(s) of another size than "
                                  f"their image resized to it (data.resize_gt): {shown}")
        report.add_no_targets(  # no ground-truth map at all: nothing to say here
            bool(c["salient"]) or not c["gts"], self.target_folder(),
            f"not one salient pixel in the {c['gts']} ground-truth map(s) of {self.name}: nothing to learn or "
            f"score. Foreground is a value > {GT_THRESHOLD} (or 1 in 0/1 maps): check that the GT files are the "
            "saliency maps.")

    def load_raw(self, index: int) -> dict[str, Any]:
        sample = super().load_raw(index)
        if self.keep_gt and "mask" in sample:
            sample["meta"]["gt"] = sample["mask"]  # the original-size GT the metrics score against
        return sample

    def record_meta(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        return {"gt_path": rec.label_path, "label_path": rec.label_path, "dataset": self.name}

    def __getitem__(self, index: int) -> dict[str, Any]:
        out = super().__getitem__(index)
        if isinstance(out.get("mask"), torch.Tensor) and not out["mask"].is_floating_point():
            m = out["mask"].float()
            out["mask"] = m[None] if m.ndim == 2 else m  # the contract: (1, H, W) float even without a transform
        return out


class SyntheticSaliencyDataset(SceneImages, SaliencyDataset):
    """In-memory synthetic scenes with their ``saliency`` mask (warm objects); item ``i`` depends only on
    ``(seed, split, i)`` and equals the files :func:`ivtune.data.scenes.write_synthetic_dataset` writes."""

    def __init__(self, num_samples: int, seed: int = 0, height: int = 256, width: int = 320,
                 night_fraction: float = 0.5, fog_fraction: float = 0.0, transform: Transform | None = None,
                 split: str = "train", keep_gt: bool = False) -> None:
        self.scenes = SyntheticScenes(num_samples, seed, height, width, night_fraction, fog_fraction, split=split)
        super().__init__(self.scenes.records, transform, strict=True, name=f"synthetic/{split}", keep_gt=keep_gt)

    def read_target(self, index: int) -> np.ndarray:
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
        raise ConfigError(f"{where} has no validation split: set data.val_fraction (e.g. 0.1) to hold out "
                          "part of the training pairs, or set data.val_split: null.")
    n_val = round(len(records) * val_fraction)
    order = np.random.default_rng([int(val_seed), 0x5A11]).permutation(len(records))
    val = set(order[:n_val].tolist())
    return [r for i, r in enumerate(records) if (i in val) == (split == "val")]


def _three(folders: Sequence[str]) -> Sequence[str]:
    if len(folders) != 3:
        raise ConfigError(f"option folders needs three names (visible, thermal, ground truth), got {folders!r}.")
    return folders


def _pairs(root: Path, folders: Sequence[str], what: str) -> list[PairRecord]:
    vis_dir = require_dir(root / folders[0], f"{what} visible")
    ir_dir = require_dir(root / folders[1], f"{what} thermal")
    gt_dir = require_dir(root / folders[2], f"{what} ground-truth")
    records = pair_by_stem(vis_dir, ir_dir, gt_dir, condition=lambda _: None)
    if not records:
        raise DataError(f"{what}: no images found in {vis_dir}.")
    return records


def build_vt5000(root: Path, split: str, transform: Transform | None = None, *,
                 folders: Sequence[str] = ("RGB", "T", "GT"), val_fraction: float = 0.0, val_seed: int = 0,
                 strict: bool = True, resize_gt: bool = False, keep_gt: bool = False,
                 ir_high_depth: str = "minmax") -> SaliencyDataset:
    """VT5000 (Tu et al. 2022): 2,500 train / 2,500 test pairs, ``{Train,Test}/{RGB,T,GT}``."""
    kw = {"transform": transform, "strict": strict, "resize_gt": resize_gt, "keep_gt": keep_gt,
          "ir_high_depth": ir_high_depth}
    base = require_dir(Path(root), "vt5000 root")
    part = "Test" if split == "test" else "Train"
    records = _pairs(require_dir(base / part, f"vt5000 {part}"), _three(folders), f"vt5000 {part}")
    if split != "test":
        records = carve_val(records, split, val_fraction, val_seed, "vt5000")
    return SaliencyDataset(records, name=f"vt5000/{split}", **kw)


def _build_flat(name: str):
    def build(root: Path, split: str, transform: Transform | None = None, *,
              folders: Sequence[str] = ("RGB", "T", "GT"), strict: bool = True, resize_gt: bool = False,
              keep_gt: bool = False, ir_high_depth: str = "minmax") -> SaliencyDataset:
        base = require_dir(Path(root), f"{name} root")
        return SaliencyDataset(_pairs(base, _three(folders), name), transform, strict, f"{name}/{split}",
                               resize_gt, keep_gt, ir_high_depth)

    build.__doc__ = f"{name.upper()}: a test-only set, ``{{RGB,T,GT}}`` at the root."
    return build


def build_folders(root: Path, split: str, transform: Transform | None = None, *,
                  folders: Sequence[str] = ("vis", "ir", "saliency"), val_fraction: float = 0.0, val_seed: int = 0,
                  strict: bool = True, resize_gt: bool = False, keep_gt: bool = False,
                  ir_high_depth: str = "minmax") -> SaliencyDataset:
    """``{split}/{vis,ir,saliency}`` (what :func:`ivtune.data.write_synthetic_dataset` writes)."""
    base = require_dir(Path(root), "folders root")
    carved = val_fraction > 0 and split in ("train", "val", "trainval")
    folder = "train" if carved else split
    if not (base / folder / folders[0]).is_dir():
        found = sorted(p.name for p in base.iterdir() if (p / folders[0]).is_dir())
        raise ConfigError(f"split {split!r} not found under {base}; splits there (folders with a {folders[0]!r} "
                          f"sub-folder): {', '.join(found) or '(none)'}"
                          + ("" if split != "val" else "; or set data.val_fraction to carve one from train")
                          + ".")
    records = _pairs(base / folder, _three(folders), f"folders/{folder}")
    if carved:
        records = carve_val(records, split, val_fraction, val_seed, f"folders {base}")
    return SaliencyDataset(records, transform, strict, f"folders/{split}", resize_gt, keep_gt, ir_high_depth)


def build_synthetic(root: Path | None, split: str, transform: Transform | None = None, *,
                    num_samples: int | None = None, seed: int = 0,
                    height: int = 256, width: int = 320, night_fraction: float = 0.5, fog_fraction: float = 0.0,
                    strict: bool = True, resize_gt: bool = False, keep_gt: bool = False,
                    ir_high_depth: str = "minmax") -> SaliencyDataset:
    """Synthetic scenes (no files); ``num_samples`` defaults to 400 / 100 / 100 for train / val / test."""
    n = {"train": 400, "val": 100, "test": 100}[split] if num_samples is None else int(num_samples)
    return SyntheticSaliencyDataset(n, seed, height, width, night_fraction, fog_fraction, transform, split=split,
                                    keep_gt=keep_gt)


_TASK_SET = ("strict", "keep_gt")  # set by the task (pre-flight scans, evaluation), never by a config
SOD_DATASETS: dict[str, DatasetEntry] = {
    "vt5000": DatasetEntry(build_vt5000, ("train", "val", "trainval", "test"), SOD_CLASSES,
                           excluded_options=_TASK_SET),
    "vt1000": DatasetEntry(_build_flat("vt1000"), ("test",), SOD_CLASSES, excluded_options=_TASK_SET),
    "vt821": DatasetEntry(_build_flat("vt821"), ("test",), SOD_CLASSES, excluded_options=_TASK_SET),
    "folders": DatasetEntry(build_folders, None, SOD_CLASSES, excluded_options=_TASK_SET),
    "synthetic": DatasetEntry(build_synthetic, ("train", "val", "test"), SOD_CLASSES, needs_root=False,
                              excluded_options=_TASK_SET),
}


def build_sod_dataset(name: str, root: str | Path | None, split: str, transform: Transform | None = None,
                      **options: Any) -> SaliencyDataset:
    """Build an SOD dataset by name (a key of :data:`SOD_DATASETS`).

    Args:
        name: ``vt5000``, ``vt1000``, ``vt821``, ``folders`` or ``synthetic``.
        root: dataset folder (None for ``synthetic``).
        split: a split of that dataset (see the module docstring).
        transform: see :class:`SaliencyDataset`.
        **options: ``strict``, ``keep_gt`` and the dataset's options: ``resize_gt``, ``ir_high_depth``; ``folders``
            (three folder names); ``val_fraction`` / ``val_seed`` (vt5000, folders); synthetic ``num_samples``,
            ``seed``, ``height``, ``width``, ``night_fraction``, ``fog_fraction``.

    Raises:
        ConfigError: unknown dataset, split or option; DataError: missing folders or files.
    """
    return build_from_registry(SOD_DATASETS, "SOD", name, root, split, transform, **options)


__all__ = ["GT_THRESHOLD", "SOD_DATASETS", "SaliencyDataset", "SyntheticSaliencyDataset", "binarize_gt",
           "build_sod_dataset", "carve_val", "read_gt"]
