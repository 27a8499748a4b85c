"""Image readers for visible, thermal and label files.

Every reader returns a fresh numpy array and raises :class:`ivtune.errors.DataError` naming the file and the reason
(missing, unreadable or corrupt, unsupported mode), so a dataset scan can report each bad file and carry on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError

# PIL modes that hold more than 8 bits per pixel (16-bit PNG/TIFF open as I;16*, 32-bit int as I, float as F).
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
HIGH_DEPTH_SCALINGS = ("minmax", "shift")


def _open(path: str | Path) -> Image.Image:
    """Open and fully decode ``path``; a truncated or non-image file fails here, not later in a worker."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"Image file not found: {p}. Check the dataset root and layout, or re-copy the file.")
    if not p.is_file():
        raise DataError(f"Expected an image file but {p} is a directory.")
    try:
        img = Image.open(p)
        img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError (not an image) and "image file is truncated" are both OSErrors.
        raise DataError(
            f"Cannot read image {p}: {exc}. The file is corrupt, truncated or not an image; re-copy or re-download it."
        ) from exc
    return img


def _to_uint8(arr: np.ndarray, path: Path, scaling: str) -> np.ndarray:
    """Bring a >8-bit grey image to uint8 (see :func:`read_gray` for the two scalings)."""
    if scaling == "shift":
        if arr.max() > 65535:
            raise DataError(
                f"{path}: 'shift' scaling needs 16-bit values, got {arr.dtype} values up to {arr.max()}. "
                "Use high_depth='minmax'."
            )
        return (np.clip(arr, 0, 65535).astype(np.uint16) >> 8).astype(np.uint8)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr.astype(np.float64) - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a visible image as RGB.

    Grey, palette, CMYK and YCbCr images are converted to RGB. An RGBA image is accepted only if its alpha is fully
    opaque: a varying 4th channel is most likely MFNet's packed thermal channel, which :func:`read_mfnet_4ch` reads.

    Args:
        path: image file.

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        DataError: the file is missing, unreadable, has >8-bit depth, or a non-opaque 4th channel.
    """
    img = _open(path)
    if img.mode in _HIGH_DEPTH_MODES:
        raise DataError(
            f"Visible image {path} has mode {img.mode!r} (more than 8 bits per pixel); expected an 8-bit RGB image. "
            "Convert it to 8-bit RGB first."
        )
    if img.mode in ("RGBA", "LA", "PA"):
        arr = np.asarray(img)
        alpha = arr[..., -1]
        if alpha.min() != 255:
            raise DataError(
                f"Visible image {path} has a 4th channel that is not an opaque alpha (values {alpha.min()}..."
                f"{alpha.max()}). If it is an MFNet RGB+thermal PNG, read it with read_mfnet_4ch (MFNet layout "
                "'rtfnet'); otherwise drop the alpha channel."
            )
        img = img.convert("RGB")
    elif img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)


def read_gray(path: str | Path, high_depth: str = "minmax") -> np.ndarray:
    """Read a thermal (infrared) image as one grey channel.

    A 3-channel file (thermal saved as RGB, or a false-colour map) is converted to luminance ``L``. Files with more
    than 8 bits per pixel (16-bit PNG/TIFF from radiometric cameras) are brought to 8 bits:

    - ``"minmax"`` (default): per-image min-max stretch to 0..255. Raw 16-bit thermal counts occupy a narrow band,
      so this keeps the contrast that the network needs, at the cost of absolute temperature.
    - ``"shift"``: ``value >> 8``, a fixed mapping that keeps absolute levels comparable across images but may leave
      a nearly constant image when the sensor uses only part of the 16-bit range.

    Args:
        path: image file.
        high_depth: ``"minmax"`` or ``"shift"``, for files with more than 8 bits per pixel.

    Returns:
        ``(H, W)`` uint8 array.

    Raises:
        DataError: the file is missing or unreadable, or a float image holds NaN / infinite values.
        ConfigError: ``high_depth`` is not one of the two scalings.
    """
    if high_depth not in HIGH_DEPTH_SCALINGS:
        raise ConfigError(f"high_depth must be one of {HIGH_DEPTH_SCALINGS}, got {high_depth!r}.")
    img = _open(path)
    if img.mode in _HIGH_DEPTH_MODES:
        arr = np.asarray(img)
        if arr.dtype.kind == "f" and not (finite := np.isfinite(arr)).all():
            bad = int((~finite).sum())
            raise DataError(
                f"Thermal image {path} has {bad} non-finite pixel value(s) (NaN or infinity) of {arr.size}; a "
                "float image needs a number at every pixel. Fill them (e.g. with the image's median) or re-export "
                "the file from the camera software.")
        return _to_uint8(arr, Path(path), high_depth)
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGB" if img.mode == "RGBA" else "L")  # drop alpha before luminance
    if img.mode != "L":
        img = img.convert("L")
    return np.array(img, dtype=np.uint8)


def read_label(path: str | Path) -> np.ndarray:
    """Read a semantic label map of class indices.

    Palette (``P``) PNGs give their index values, not their colours. A grey-valued RGB(A) file (the same value in
    every channel) is accepted; a colour-coded one is not, since mapping colours back to classes needs the palette.

    Args:
        path: label file.

    Returns:
        ``(H, W)`` array: uint8 when every value fits, else int64.

    Raises:
        DataError: the file is missing, unreadable, float-valued or colour-coded.
    """
    img = _open(path)
    if img.mode == "F":
        raise DataError(f"Label {path} has float mode 'F'; expected integer class indices (mode L, P or I;16).")
    if img.mode in ("P", "L"):
        return np.array(img, dtype=np.uint8)
    if img.mode == "1":
        return np.array(img, dtype=np.uint8)  # bool -> 0/1
    if img.mode in ("RGB", "RGBA", "LA"):
        arr = np.asarray(img)
        ch = arr[..., :3] if img.mode != "LA" else arr[..., :1]
        if not (ch == ch[..., :1]).all():
            raise DataError(
                f"Label {path} is colour-coded (mode {img.mode!r} with differing channels); expected class indices. "
                "Convert colours to indices with the dataset palette and save as a grey or palette PNG."
            )
        return np.array(ch[..., 0], dtype=np.uint8)
    arr = np.asarray(img).astype(np.int64)
    if arr.size and 0 <= arr.min() and arr.max() <= 255:
        return arr.astype(np.uint8)
    return arr


def read_mfnet_4ch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Split an MFNet 4-channel PNG (RGBA mode: channels 0-2 RGB, channel 3 thermal) into its two images.

    Args:
        path: MFNet ``images/NAME.png`` file.

    Returns:
        ``(rgb, thermal)``: ``(H, W, 3)`` and ``(H, W)`` uint8 arrays.

    Raises:
        DataError: the file is missing, unreadable, or not a 4-channel RGBA image.
    """
    img = _open(path)
    if img.mode != "RGBA":
        raise DataError(
            f"{path} has mode {img.mode!r} ({len(img.getbands())} channels); expected a 4-channel RGBA PNG with RGB in "
            "channels 0-2 and thermal in channel 3 (MFNet 'rtfnet' layout). If the thermal images are separate files, "
            "use the MFNet layout 'separate'."
        )
    arr = np.asarray(img)
    return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])


def write_image(path: str | Path, image: np.ndarray | Image.Image) -> Path:
    """Save an image file atomically: a full disk or a kill never leaves a partial file under ``path``.

    Args:
        path: the output file; its extension picks the format.
        image: a uint8 array (``(H, W)`` grey, ``(H, W, 3)`` RGB) or a PIL image (e.g. a palette PNG).

    Raises:
        StorageError: no space left or the folder is not writable (the message names ``path``).
    """
    from ..checkpoint import atomic_write  # the model side's IO module; imported here to keep the readers light

    path = Path(path)
    img = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))
    fmt = Image.registered_extensions().get(path.suffix.lower())
    atomic_write(path, lambda tmp: img.save(tmp, format=fmt))
    return path
