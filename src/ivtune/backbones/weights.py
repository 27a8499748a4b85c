"""Loading pretrained weights into a plain timm model, with the key check timm skips.

With ``num_classes=0`` timm drops the classifier and loads non-strictly, so a truncated file would load
silently. Here every state dict, from the hub or a local file, goes through timm's own checkpoint filter
(position-table resampling, key renames) and then an explicit comparison: only classifier keys may be absent.
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from pathlib import Path

import torch
from timm.models import load_state_dict, load_state_dict_from_hf
from torch import nn

from ..errors import CheckpointMismatchError, WeightsUnavailableError, key_mismatch_detail


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or "head"
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(f"{n}." for n in names) + ("head.", "fc_norm.", "head_drop.")


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` / ``.pth`` / ``.bin`` state dict (timm unwraps ``state_dict`` / ``model`` keys)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file {path} does not exist. Check the path (absolute or relative to "
                                      f"{Path.cwd()}).")
    kind = _file_kind(path)
    if kind is not None:
        raise WeightsUnavailableError(f"{path} is not a weights file: it is {kind}. model.weights must be a "
                                      ".safetensors / .pth / .bin state dict of the backbone.")
    try:
        return load_state_dict(str(path))
    except Exception as e:  # corrupt file, refused pickle, truncated safetensors header ...
        text = str(e)
        if "Unsupported globals" in text:  # torch's own advice (weights_only=False) is what ivtune never does
            raise WeightsUnavailableError(
                f"cannot read weights file {path}: it holds pickled objects other than tensors (a whole model or a "
                "training checkpoint?), which ivtune does not unpickle. Save the backbone's state_dict() (or "
                "convert the file to .safetensors) and pass that.") from e
        if isinstance(e, pickle.UnpicklingError) or "weights_only" in text:
            text = "neither a safetensors nor a PyTorch file"
        raise WeightsUnavailableError(f"cannot read weights file {path}: {text}. The file is truncated, corrupt or "
                                      "of another kind: download or copy it again.") from e


_NOT_WEIGHTS = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
                b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"BM": "a BMP image", b"%PDF": "a PDF",
                b"\x1f\x8b": "a gzip archive (unpack it first)"}


def _file_kind(path: Path) -> str | None:
    """What a file that is clearly no state dict is (an image, a PDF ...), from its first bytes; else None."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "empty (0 bytes)"
    return next((kind for magic, kind in _NOT_WEIGHTS.items() if head.startswith(magic)), None)


def download_pretrained(model: nn.Module, model_name: str) -> dict[str, torch.Tensor]:
    """Fetch the pretrained state dict named by the model's timm ``pretrained_cfg`` (hub id or URL)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    hub_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    try:
        if hub_id:
            filename = cfg.get("hf_hub_filename")
            return load_state_dict_from_hf(hub_id, filename) if filename else load_state_dict_from_hf(hub_id)
        if url:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsUnavailableError(
            f"could not download pretrained weights for {model_name!r} ({hub_id or url}): {type(e).__name__}: {e}. "
            "If this machine is offline, download the file elsewhere and pass weights=FILE "
            "(config: model.weights: FILE, or --set model.weights=FILE), or set pretrained=False for a random-init "
            "backbone."
        ) from e
    raise WeightsUnavailableError(f"timm has no pretrained weights for {model_name!r}; pass weights=FILE.")


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Filter ``state_dict`` the way timm does for this family, check keys and shapes, then load it.

    Raises:
        CheckpointMismatchError: a backbone key is missing, unexpected, or has the wrong shape.
    """
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state_dict = filter_fn(state_dict, model)
    skip = _classifier_prefixes(model)
    own = model.state_dict()
    # timm sets num_classes=0 for backbones, so the classifier in the file (if any) is simply not wanted
    state_dict = {k: v for k, v in state_dict.items() if not (k.startswith(skip) and k not in own)}
    missing = sorted(k for k in own if k not in state_dict and not k.startswith(skip))
    unexpected = sorted(k for k in state_dict if k not in own)
    mis_shaped = sorted(
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    )
    if missing or unexpected or mis_shaped:
        raise CheckpointMismatchError(
            f"weights from {source} do not match {type(model).__name__} "
            f"({getattr(model, 'pretrained_cfg', {}).get('architecture', '?')}): "
            + key_mismatch_detail(missing, unexpected, mis_shaped)
            + ". Is the file for this timm model name (and the same timm kwargs, e.g. img_size, reg tokens)?"
        )
    model.load_state_dict(state_dict, strict=False)
