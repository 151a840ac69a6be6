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
  Anything else (2 channels, 4-D arrays) is an :class:`ImageError` naming the
  channel count or shape.
* sides: the longer side may be at most :data:`MAX_ASPECT_RATIO` times the
  shorter. SAM scales the longer side to 1024 pixels, so a thinner image (a
  1 x 3000 strip) would keep no row at all. (Writing such an image is fine:
  :func:`write_image` and the overlays skip this rule.)

Files are read by extension: PNG/JPEG/BMP through OpenCV (converted from BGR),
TIFF through tifffile (``plane`` picks a 2-D plane from a stack; the file's own
axes decide what is a stack, so planar RGB ``(3, H, W)`` is read as colour),
``.npy`` through NumPy (a last axis of at most 4 holds channels, a longer one
makes a stack ``(N, H, W)``). Before OpenCV decodes a file its structure is
checked (a PNG's chunks up to ``IEND`` with their CRCs, its header's size; a
JPEG's end-of-image marker after its last scan), so a truncated or corrupt
file is an error instead of a partly grey image, and the message is not
preceded by libpng's or libjpeg's own warnings. Every failure raises
:class:`ImageError` naming the file.

Outputs are encoded in memory and written by :mod:`segprompt.atomic`
(temporary file beside the target, every byte checked, fsync, rename): a
crash or a full disk never leaves a half-written mask, and the old file stays.
:func:`mask_bytes` / :func:`image_bytes` give the encoded files, so a command
writing several outputs can pass them all to :func:`~segprompt.atomic.write_files`
at once (all or none).
"""

from __future__ import annotations

import io as _io
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .atomic import atomic_path, atomic_write_bytes, atomic_write_text, write_files
from .errors import ImageError

if TYPE_CHECKING:
    from .prompts import Prompt

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")
_CV2_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_TIFF_SUFFIXES = (".tif", ".tiff")
#: Types :func:`write_image` writes, and the lossless ones :func:`write_mask` accepts.
OUTPUT_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
PERCENTILES = (0.5, 99.5)
#: The longer side of an image may be at most this many times its shorter side (see the module docstring).
MAX_ASPECT_RATIO = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI, _JPEG_SOS, _JPEG_EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"


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


def _rgb_uint8(image: np.ndarray) -> np.ndarray:
    """:func:`to_rgb_uint8` without the side check: for images written, not segmented (overlays)."""
    data = np.asarray(image)
    if data.size == 0:
        raise ImageError(f"empty image of shape {data.shape}")
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim == 3 and data.shape[2] not in (3, 4) and data.shape[2] <= 4:
        raise ImageError(
            f"cannot use an image with {data.shape[2]} channels (shape {data.shape}); "
            "expected 1 (grey), 3 (RGB) or 4 (RGBA)"
        )
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] not in (3, 4)):
        raise ImageError(f"cannot use an array of shape {data.shape} as an image; expected (H, W), (H, W, 3) or (H, W, 4)")
    data = np.repeat(_to_uint8(data)[..., None], 3, axis=2) if data.ndim == 2 else _to_uint8(data[..., :3])
    return np.ascontiguousarray(data)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Normalise an array to ``(H, W, 3)`` uint8 RGB by the rules in the module docstring.

    Raises:
        ImageError: an empty array, a shape or channel count that is not an
            image, a pixel type without a rule, or an image too thin to segment.
    """
    rgb = _rgb_uint8(image)
    short, long = sorted(rgb.shape[:2])
    if long > MAX_ASPECT_RATIO * short:
        raise ImageError(
            f"an image of {rgb.shape[0]} x {rgb.shape[1]} (H x W) pixels is too thin to segment: its longer side "
            f"is more than {MAX_ASPECT_RATIO} times its shorter (SAM scales the longer to 1024 pixels); crop or pad it"
        )
    return rgb


def _opencv_pixel_limit() -> int:
    """The most pixels OpenCV decodes (``OPENCV_IO_MAX_IMAGE_PIXELS``, default 2^30), as OpenCV reads it."""
    try:
        return int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "")) or 1 << 30
    except ValueError:
        return 1 << 30


def _check_png(path: Path, content: bytes) -> None:
    """Refuse a PNG whose header claims more pixels than OpenCV decodes, or whose chunks are cut off or corrupt."""
    offset = len(_PNG_SIGNATURE)
    while True:
        if offset + 8 > len(content):
            raise ImageError(f"{path}: the PNG file is truncated (it ends before its IEND chunk)")
        length, kind = struct.unpack(">I4s", content[offset : offset + 8])
        end = offset + 12 + length
        if end > len(content):
            raise ImageError(f"{path}: the PNG file is truncated (its {kind.decode('latin-1')} chunk is cut off)")
        body = content[offset + 4 : end - 4]
        if zlib.crc32(body) != struct.unpack(">I", content[end - 4 : end])[0]:
            raise ImageError(f"{path}: the PNG file is corrupt (the CRC of its {kind.decode('latin-1')} chunk is wrong)")
        if kind == b"IHDR" and length >= 8:
            width, height = struct.unpack(">II", body[4:12])
            if width * height > _opencv_pixel_limit():
                raise ImageError(
                    f"{path}: the PNG header claims {width} x {height} (W x H) pixels, more than the "
                    f"{_opencv_pixel_limit()} OpenCV decodes (OPENCV_IO_MAX_IMAGE_PIXELS)"
                )
        if kind == b"IEND":
            return
        offset = end


def _check_jpeg(path: Path, content: bytes) -> None:
    """Refuse a JPEG with no end-of-image marker after its last scan: libjpeg would fill the rest with grey."""
    # 0xFF inside entropy-coded data is always followed by 0x00, so these two bytes are real markers.
    last_scan = content.rfind(_JPEG_SOS)
    if last_scan < 0 or content.rfind(_JPEG_EOI) < last_scan:
        raise ImageError(f"{path}: the JPEG file is truncated (its image data ends before the end-of-image marker)")


def _decode_opencv(path: Path, plane: int | None) -> np.ndarray:
    suffix = path.suffix.lower()
    content = path.read_bytes()
    if content.startswith(_PNG_SIGNATURE):  # by content: a JPEG named .png is still decoded
        _check_png(path, content)
    elif content.startswith(_JPEG_SOI):
        _check_jpeg(path, content)
    try:
        data = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        reason = "more pixels than OpenCV decodes" if "MAX_IMAGE_PIXELS" in str(exc) else str(exc).strip().splitlines()[-1]
        raise ImageError(f"{path}: cannot decode the file as {suffix[1:].upper()} ({reason})") from None
    if data is None:
        raise ImageError(f"{path}: cannot decode the file as {suffix[1:].upper()} (corrupt or not an image)")
    if data.ndim == 3 and data.shape[2] == 3:
        data = cv2.cvtColor(data, cv2.COLOR_BGR2RGB)
    elif data.ndim == 3 and data.shape[2] == 4:
        data = cv2.cvtColor(data, cv2.COLOR_BGRA2RGBA)
    return _one_plane(path, data, plane, stack=False)


def _read_tiff(path: Path, plane: int | None) -> np.ndarray:
    """The TIFF's first series with its samples (channels) last.

    With a samples axis (``S``: the file says which axis holds colour) it is a
    stack when it has axes beyond Y, X and S; without one (an array saved with
    its shape only) the rule of ``.npy`` files applies.
    """
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            data, axes = series.asarray(), series.axes
    except Exception as exc:  # tifffile raises many types for broken files
        raise ImageError(f"{path}: cannot read TIFF ({exc})") from exc
    if "S" in axes:  # planar colour ("SYX", photometric RGB with separate planes) is still colour
        return _one_plane(path, np.moveaxis(data, axes.index("S"), -1), plane, stack=data.ndim > 3)
    return _one_plane(path, data, plane, stack=_looks_like_stack(data))


def _read_raw(path: Path, plane: int | None) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in _CV2_SUFFIXES:
        return _decode_opencv(path, plane)
    if suffix in _TIFF_SUFFIXES:
        return _read_tiff(path, plane)
    if suffix == ".npy":
        try:
            data = np.load(str(path), allow_pickle=False)
        except Exception as exc:
            raise ImageError(f"{path}: cannot read NumPy file ({exc})") from exc
        return _one_plane(path, data, plane, stack=_looks_like_stack(data))
    raise ImageError(f"{path}: unsupported image type {suffix!r}; supported: {', '.join(IMAGE_SUFFIXES)}")


def _looks_like_stack(data: np.ndarray) -> bool:
    """``(N, H, W[, C])`` rather than ``(H, W[, C])``: a last axis longer than 4 is not one of channels."""
    return data.ndim == 4 or (data.ndim == 3 and data.shape[2] > 4)


def _one_plane(path: Path, data: np.ndarray, plane: int | None, stack: bool) -> np.ndarray:
    """``data`` itself, or plane ``plane`` (default 0) of a ``stack`` along its first axis."""
    if not stack:
        if plane not in (None, 0):
            raise ImageError(f"{path}: plane={plane} requested but the file holds a single image of shape {data.shape}")
        return data
    index = 0 if plane is None else plane
    if not -data.shape[0] <= index < data.shape[0]:
        raise ImageError(f"{path}: plane={plane} out of range; the stack has {data.shape[0]} planes")
    return data[index]


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    if not path.is_file():
        raise ImageError(f"{path}: no such file")


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
    _check_file(path)
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
    _check_file(path)
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


def encode_image(suffix: str, data: np.ndarray) -> bytes:
    """The bytes of a ``(H, W)`` or ``(H, W, 3)`` RGB image file of type ``suffix`` (``".png"``, ``".tif"``, ...).

    Encoding in memory lets :func:`~segprompt.atomic.write_files` check that
    every byte reaches the disk; OpenCV's ``imwrite`` reports success even when
    the disk filled up while it closed the file.

    Raises:
        ImageError: an unsupported type, or data the format cannot hold.
    """
    suffix = suffix.lower()
    if suffix in _TIFF_SUFFIXES:
        import tifffile

        buffer = _io.BytesIO()
        tifffile.imwrite(buffer, data)
        return buffer.getvalue()
    if suffix in _CV2_SUFFIXES:
        to_write = cv2.cvtColor(data, cv2.COLOR_RGB2BGR) if data.ndim == 3 else data
        try:
            ok, encoded = cv2.imencode(suffix, to_write)
        except cv2.error as exc:
            raise ImageError(f"OpenCV cannot encode a {data.dtype} array of shape {data.shape} as {suffix}") from exc
        if not ok:
            raise ImageError(f"OpenCV cannot encode a {data.dtype} array of shape {data.shape} as {suffix}")
        return encoded.tobytes()
    raise ImageError(f"unsupported output type {suffix!r}; use .png or .tif")


def check_output_type(path: str | os.PathLike, kinds: tuple[str, ...] = OUTPUT_SUFFIXES) -> None:
    """Raise :class:`ImageError` unless ``path`` ends in one of ``kinds`` (checked before any work)."""
    suffix = Path(path).suffix.lower()
    if suffix not in kinds:
        raise ImageError(f"{path}: unsupported output type {Path(path).suffix!r}; use {', '.join(kinds)}")


def mask_bytes(path: str | os.PathLike, mask: np.ndarray) -> bytes:
    """The file content :func:`write_mask` writes to ``path`` (type from its suffix)."""
    path = Path(path)
    check_output_type(path, MASK_SUFFIXES)
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
    try:
        return encode_image(path.suffix, data)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


def image_bytes(path: str | os.PathLike, image: np.ndarray) -> bytes:
    """The file content :func:`write_image` writes to ``path`` (type from its suffix)."""
    check_output_type(path)
    try:
        return encode_image(Path(path).suffix, _rgb_uint8(image))
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write a mask atomically as PNG or TIFF.

    A bool mask is written as 0/255 uint8; an integer label map as uint8 when
    its values fit, else uint16 (PNG) or its own type (TIFF).

    Raises:
        ImageError: a mask that is not 2-D bool/integer labels, or a bad suffix.
        StorageError: the file cannot be written (full disk, read-only folder).
    """
    write_files({path: mask_bytes(path, mask)})


#: Distinct colours for label overlays (RGB), cycled by label id.
OVERLAY_COLOURS = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ],
    dtype=np.uint8,
)
#: Colours (RGB) of drawn prompts, as the napari widget shows them: include points lime, exclude red, box yellow.
PROMPT_COLOURS = {"include": (0, 255, 0), "exclude": (255, 0, 0), "box": (255, 255, 0)}


def _lab(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` CIELAB of ``(N, 3)`` uint8 RGB colours (L in [0, 100])."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)
    return lab.astype(np.float32) * np.float32([100 / 255, 1, 1]) - np.float32([0, 128, 128])


def mask_colour(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The :data:`OVERLAY_COLOURS` entry farthest (CIELAB) from the mean colour of ``image`` under ``mask``.

    A fixed colour vanishes on objects of that colour (a red overlay on a red
    fruit); this one always contrasts with what it covers. ``(3,)`` uint8 RGB.
    """
    rgb = _rgb_uint8(image)
    covered = rgb[np.asarray(mask, bool)]
    if covered.size == 0:
        return OVERLAY_COLOURS[0]
    mean = _lab(covered.mean(axis=0).round().astype(np.uint8)[None])[0]
    return OVERLAY_COLOURS[int(np.argmax(np.linalg.norm(_lab(OVERLAY_COLOURS) - mean, axis=1)))]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, prompt: Prompt | None = None) -> np.ndarray:
    """Blend a bool mask or label map over an image, outline it, and draw the prompt; ``(H, W, 3)`` uint8 RGB.

    Label ``0`` is background and left untouched. A single object (a bool
    mask, or labels ``{0, 1}``) gets :func:`mask_colour`; label ``k`` of a map
    with several gets ``OVERLAY_COLOURS[(k - 1) % 10]``. Each region's inner
    boundary is drawn in its colour at full strength. ``prompt``'s points and
    box are drawn on top (:func:`draw_prompt`).
    """
    rgb = _rgb_uint8(image)
    labels = np.asarray(labels)
    if labels.shape != rgb.shape[:2]:
        raise ImageError(f"overlay: mask shape {labels.shape} does not match image shape {rgb.shape[:2]}")
    labels = labels.astype(np.int64)
    foreground = labels > 0
    if labels.max(initial=0) == 1:
        palette = mask_colour(rgb, foreground)[None]
    else:
        palette = OVERLAY_COLOURS
    colours = palette[(labels - 1) % len(palette)].astype(np.float32)
    out = rgb.astype(np.float32)
    out[foreground] = (1 - alpha) * out[foreground] + alpha * colours[foreground]
    from skimage.segmentation import find_boundaries

    boundary = find_boundaries(labels, mode="inner") & foreground
    out[boundary] = colours[boundary]
    out = out.astype(np.uint8)
    return out if prompt is None else draw_prompt(out, prompt)


def draw_prompt(image: np.ndarray, prompt: Prompt) -> np.ndarray:
    """``image`` (RGB) with ``prompt``'s box and points drawn in :data:`PROMPT_COLOURS`, each edged in black.

    Sizes follow the image (a point's radius is 0.8 % of the longest side, at
    least 3 px). The box covers pixels ``x0 <= x < x1``, ``y0 <= y < y1``.
    Other prompt kinds (mask, text, references) have nothing to draw here.
    """
    out = np.ascontiguousarray(_rgb_uint8(image)).copy()
    side = max(out.shape[:2])
    thickness = max(1, round(0.003 * side))
    if prompt.box is not None:
        corners = np.array([[prompt.box.x0, prompt.box.y0], [prompt.box.x1 - 1, prompt.box.y1 - 1]])
        (x0, y0), (x1, y1) = np.rint(corners).astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), (0, 0, 0), thickness + 2, cv2.LINE_8)
        cv2.rectangle(out, (x0, y0), (x1, y1), PROMPT_COLOURS["box"], thickness, cv2.LINE_8)
    if prompt.points is not None:
        radius = max(3, round(0.008 * side))
        for (x, y), label in zip(prompt.points.xy, prompt.points.labels):
            centre = (int(round(x)), int(round(y)))
            colour = PROMPT_COLOURS["include" if label == 1 else "exclude"]
            cv2.circle(out, centre, radius + thickness, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, centre, radius, colour, -1, cv2.LINE_AA)
    return out


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB image atomically (PNG, JPEG, BMP, TIFF); see :func:`write_mask` for the errors."""
    write_files({path: image_bytes(path, image)})


def write_figure(path: str | os.PathLike, figure: Any, **savefig_options: Any) -> None:
    """Write a matplotlib figure atomically; the format follows ``path``'s suffix (``.png``, ``.pdf``, ``.svg``)."""
    buffer = _io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip(".").lower() or "png", **savefig_options)
    atomic_write_bytes(path, buffer.getbuffer())


__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_SUFFIXES",
    "MAX_ASPECT_RATIO",
    "OUTPUT_SUFFIXES",
    "OVERLAY_COLOURS",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_type",
    "encode_image",
    "image_bytes",
    "mask_bytes",
    "overlay",
    "read_image",
    "read_mask",
    "to_rgb_uint8",
    "write_figure",
    "write_files",
    "write_image",
    "write_mask",
]
