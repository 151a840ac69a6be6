"""Reading images, writing masks and overlays.

Every image entering segprompt is normalised by :func:`to_rgb_uint8` to a
``(H, W, 3)`` uint8 RGB array. The rules:

* ``bool``: ``False`` -> 0, ``True`` -> 255.
* ``uint8``: unchanged.
* integer data wider than 8 bits (``uint16``, ``int32``, ...): linear
  percentile scaling, the 0.5th percentile -> 0 and the 99.5th -> 255, clipped.
  A constant image maps to 0.
* floating point: finite values already inside ``[0, 1]`` are multiplied by
  255; any other range gets the same percentile scaling as wide integers. NaN
  and infinities become 0.
* channels: ``(H, W)`` and ``(H, W, 1)`` grayscale are replicated to three
  channels; ``(H, W, 4)`` RGBA drops alpha; ``(H, W, 3)`` is taken as RGB.
  Anything else (2 channels, 4-D arrays) is an :class:`ImageError`.

Files are read by extension: PNG/JPEG/BMP through OpenCV (converted from BGR),
TIFF through tifffile (``plane`` picks a 2-D plane from a stack), ``.npy``
through NumPy. Every failure raises :class:`ImageError` naming the file.

Outputs are written atomically (temporary file in the same folder, then
:func:`os.replace`), so a crash never leaves a half-written mask.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import ImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")
_CV2_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")
PERCENTILES = (0.5, 99.5)


def _percentile_scale(data: np.ndarray) -> np.ndarray:
    values = data.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(data.shape, np.uint8)
    low, high = np.percentile(values[finite], PERCENTILES)
    if high <= low:
        return np.zeros(data.shape, np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _to_uint8(data: np.ndarray) -> np.ndarray:
    if data.dtype == bool:
        return data.astype(np.uint8) * 255
    if data.dtype == np.uint8:
        return data
    if np.issubdtype(data.dtype, np.integer):
        return _percentile_scale(data)
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if finite.any() and data[finite].min() >= 0.0 and data[finite].max() <= 1.0:
            return np.clip(np.rint(np.where(finite, data, 0.0) * 255.0), 0, 255).astype(np.uint8)
        return _percentile_scale(data)
    raise ImageError(f"unsupported pixel type {data.dtype}")


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise an array to ``(H, W, 3)`` uint8 RGB by the rules in the module docstring."""
    data = np.asarray(image)
    if data.size == 0:
        raise ImageError(f"empty image of shape {data.shape}")
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = np.repeat(_to_uint8(data)[..., None], 3, axis=2)
    elif data.ndim == 3 and data.shape[2] in (3, 4):
        data = _to_uint8(data[..., :3])
    else:
        raise ImageError(f"cannot use an array of shape {data.shape} as an image; expected (H, W), (H, W, 3) or (H, W, 4)")
    return np.ascontiguousarray(data)


def _read_raw(path: Path, plane: int | None) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in _CV2_SUFFIXES:
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if data is None:
            raise ImageError(f"{path}: cannot decode the file as {suffix[1:].upper()} (corrupt or not an image)")
        if data.ndim == 3 and data.shape[2] == 3:
            data = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
        elif data.ndim == 3 and data.shape[2] == 4:
            data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA)
        return data
    if suffix in _TIFF_SUFFIXES:
        import tifffile

        try:
            data = tifffile.imread(str(path))
        except Exception as exc:  # tifffile raises many types for broken files
            raise ImageError(f"{path}: cannot read TIFF ({exc})") from exc
        return _select_plane(path, data, plane)
    if suffix == ".npy":
        try:
            data = np.load(str(path), allow_pickle=False)
        except Exception as exc:
            raise ImageError(f"{path}: cannot read NumPy file ({exc})") from exc
        return _select_plane(path, data, plane)
    raise ImageError(f"{path}: unsupported image type {suffix!r}; supported: {', '.join(IMAGE_SUFFIXES)}")


def _select_plane(path: Path, data: np.ndarray, plane: int | None) -> np.ndarray:
    is_stack = data.ndim == 4 or (data.ndim == 3 and data.shape[2] not in (1, 3, 4))
    if not is_stack:
        if plane not in (None, 0):
            raise ImageError(f"{path}: plane={plane} requested but the file holds a single image of shape {data.shape}")
        return data
    index = 0 if plane is None else plane
    if not -data.shape[0] <= index < data.shape[0]:
        raise ImageError(f"{path}: plane={plane} out of range; the stack has {data.shape[0]} planes")
    return data[index]


def read_image(path: str | os.PathLike, plane: int | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB.

    Args:
        path: PNG, JPEG, BMP, TIFF or ``.npy`` file.
        plane: index of the plane to take from a TIFF / ``.npy`` stack of shape
            ``(N, H, W[, C])``; the first plane when ``None``.

    Raises:
        ImageError: missing, empty, corrupt or unsupported file, naming ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: file is empty")
    data = _read_raw(path, plane)
    try:
        return to_rgb_uint8(data)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask or label image unchanged, as a 2-D integer array.

    Multi-channel files whose channels are equal are reduced to one channel;
    palette PNGs come back as their index values.

    Raises:
        ImageError: missing, corrupt or colour (channels differ) files.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.suffix.lower() == ".png":
        # OpenCV expands palette PNGs to colour; PIL keeps the palette indices (VOC-style label maps).
        from PIL import Image

        try:
            with Image.open(path) as handle:
                data = np.array(handle)
        except Exception as exc:
            raise ImageError(f"{path}: cannot decode PNG ({exc})") from exc
    else:
        data = _read_raw(path, None)
    if data.ndim == 3:
        if not all(np.array_equal(data[..., 0], data[..., c]) for c in range(1, min(data.shape[2], 3))):
            raise ImageError(f"{path}: mask has differing colour channels; expected a single-channel label image")
        data = data[..., 0]
    if data.ndim != 2:
        raise ImageError(f"{path}: mask must be 2-D, got shape {data.shape}")
    return data


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    The temporary file keeps ``path``'s suffix so writers that dispatch on the
    extension work. On an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to ``path`` atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def _write_array_image(path: Path, data: np.ndarray) -> None:
    suffix = path.suffix.lower()
    with atomic_path(path) as temp:
        if suffix in _TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(str(temp), data)
        elif suffix in (".png", ".jpg", ".jpeg", ".bmp"):
            to_write = cv2.cvtColor(data, cv2.COLOR_RGB2BGR) if data.ndim == 3 else data
            if not cv2.imwrite(str(temp), to_write):
                raise ImageError(f"{path}: OpenCV could not write the file")
        else:
            raise ImageError(f"{path}: unsupported output type {path.suffix!r}; use .png or .tif")


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a mask atomically as PNG or TIFF.

    A bool mask is written as 0/255 uint8; an integer label map as uint8 when
    its values fit, else uint16 (PNG) or its own type (TIFF).
    """
    path = Path(path)
    data = np.asarray(mask)
    if data.ndim != 2:
        raise ImageError(f"{path}: a mask must be 2-D, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8) * 255
    elif not np.issubdtype(data.dtype, np.integer):
        raise ImageError(f"{path}: a mask must be bool or integer labels, got {data.dtype}")
    elif data.min(initial=0) < 0:
        raise ImageError(f"{path}: label values must be non-negative, found {data.min()}")
    elif data.max(initial=0) <= 255:
        data = data.astype(np.uint8)
    elif data.max() <= 65535:
        data = data.astype(np.uint16)
    elif path.suffix.lower() not in _TIFF_SUFFIXES:
        raise ImageError(f"{path}: labels up to {data.max()} need a .tif output")
    _write_array_image(path, data)


#: Distinct colours for label overlays (RGB), cycled by label id.
OVERLAY_COLOURS = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ],
    dtype=np.uint8,
)


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a bool mask or label map over an image; returns ``(H, W, 3)`` uint8 RGB.

    Label ``0`` is background and left untouched; label ``k`` gets colour
    ``OVERLAY_COLOURS[(k - 1) % 10]``. Region outlines are drawn in white.
    """
    rgb = to_rgb_uint8(image)
    labels = np.asarray(labels)
    if labels.shape != rgb.shape[:2]:
        raise ImageError(f"overlay: mask shape {labels.shape} does not match image shape {rgb.shape[:2]}")
    labels = labels.astype(np.int64)
    out = rgb.astype(np.float32)
    foreground = labels > 0
    colours = OVERLAY_COLOURS[(labels[foreground] - 1) % len(OVERLAY_COLOURS)].astype(np.float32)
    out[foreground] = (1 - alpha) * out[foreground] + alpha * colours
    from skimage.segmentation import find_boundaries

    out[find_boundaries(labels, mode="inner")] = 255
    return out.astype(np.uint8)


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB image atomically (PNG, JPEG, TIFF)."""
    _write_array_image(Path(path), to_rgb_uint8(image))
