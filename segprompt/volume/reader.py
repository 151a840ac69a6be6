"""Volumes and time series read lazily, one plane at a time, with named axes.

Axis conventions
----------------
Axes are named by the letters of ``TZCYX``: ``T`` time, ``Z`` depth (the
slices of a volume), ``C`` channel, ``Y`` row, ``X`` column, in the order the
array stores them (``"ZYX"``, ``"TYX"``, ``"ZYXC"``, ``"TZYX"``, ``"TCZYX"``
...). Every volume has ``Y`` and ``X``. Propagation runs along one *stack
axis*: ``Z`` when present, else ``T``. Every other non-spatial axis is fixed
with :meth:`Volume.select` first (``T=3`` of a ``TZYX`` series of volumes,
``Z=10`` to follow one depth through time, ``C=1`` to pick a channel), except
a ``C`` of 1, 3 or 4 entries, which stays the colour of each plane (grayscale,
RGB, RGBA). Planes come out as ``(Y, X)`` or ``(Y, X, C)`` arrays: slice
``k`` of a ``ZYX`` volume is ``data[k]``, its pixel ``(row, col)`` is
``data[k, row, col]``, and a prompt on it uses ``(x, y) = (col, row)``
(:mod:`segprompt.prompts`).

Where the axes come from when ``axes`` is not given:

* TIFF: tifffile's series axes (ImageJ, OME-TIFF or tifffile metadata); its
  ``S`` (samples) is ``C``, its ``Q`` / ``I`` (an unnamed stack) ``Z``.
* OME-Zarr (NGFF 0.4 or 0.5): the ``multiscales`` axis names; level 0 is read.
* ``.npy`` and plain Zarr arrays (no metadata): 3-D is ``ZYX``; 4-D is
  ``ZYXC`` when the last axis has 3 or 4 entries, else ``TZYX``; anything else
  needs ``axes``. A 3-D array whose last axis has 3 or 4 entries is refused
  without ``axes``: it may be one RGB image rather than a stack.

Laziness: ``.npy`` files are memory-mapped, TIFF files read through
tifffile's Zarr store (one page per plane), Zarr arrays chunk by chunk;
:meth:`Volume.plane` indexes the array with integers on every non-plane axis,
so only the chunks or pages of that plane are read and a volume larger than
the memory is never loaded whole. Any array-like with ``shape``, ``dtype``
and NumPy indexing (NumPy, Zarr, Dask, h5py) can be wrapped directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import ImageError
from ..io import to_rgb_uint8

#: The axis letters, in their usual order.
AXIS_LETTERS = "TZCYX"
#: Axes along which planes are stacked, in order of preference as the stack axis.
STACK_AXES = "ZT"
#: Channel counts a plane keeps as its colour (grayscale, RGB, RGBA).
COLOUR_CHANNELS = (1, 3, 4)
#: tifffile axis letters that mean something else here: samples are channels, an unnamed stack is Z.
_TIFF_AXES = {"S": "C", "Q": "Z", "I": "Z"}
ZARR_SUFFIX = ".zarr"


def check_axes(axes: str, shape: tuple[int, ...], where: str) -> str:
    """``axes`` upper-cased, checked to name one distinct letter of :data:`AXIS_LETTERS` per axis of ``shape``, ``Y`` and ``X`` among them.

    Raises:
        ImageError: naming ``where`` (the file) and what is wrong.
    """
    axes = str(axes).upper()
    bad = sorted(set(axes) - set(AXIS_LETTERS))
    if bad:
        raise ImageError(f"{where}: unknown axis letter(s) {''.join(bad)!r} in axes {axes!r}; use letters of {AXIS_LETTERS}")
    if len(set(axes)) != len(axes):
        raise ImageError(f"{where}: axes {axes!r} name an axis twice")
    if len(axes) != len(shape):
        raise ImageError(f"{where}: axes {axes!r} name {len(axes)} axes but the array has {len(shape)} (shape {tuple(shape)})")
    if "Y" not in axes or "X" not in axes:
        raise ImageError(f"{where}: axes {axes!r} must include Y and X")
    return axes


def default_axes(shape: tuple[int, ...], where: str) -> str:
    """The axes of an array without metadata (rules in the module docstring).

    Raises:
        ImageError: a 2-D array (one image, not a volume), or a shape the rules do not decide.
    """
    if len(shape) == 2:
        raise ImageError(f"{where}: a single 2-D image of shape {shape}, not a volume; use `segprompt segment`")
    if len(shape) == 3:
        if shape[-1] in (3, 4):
            raise ImageError(
                f"{where}: shape {shape} may be one RGB image (Y, X, C) or a stack of {shape[0]} planes of width "
                f"{shape[-1]}; give the axes (--axes ZYX or YXC)"
            )
        return "ZYX"
    if len(shape) == 4:
        return "ZYXC" if shape[-1] in (3, 4) else "TZYX"
    raise ImageError(f"{where}: cannot guess the axes of a {len(shape)}-D array of shape {shape}; give them (--axes TZCYX)")


class Volume:
    """A stack of 2-D planes in an array-like, read one plane at a time.

    Args:
        data: the array (NumPy, memory map, Zarr, Dask, h5py ...).
        axes: one letter of :data:`AXIS_LETTERS` per axis of ``data``.
        name: what to call it in messages (its file).
        fixed: axis -> index of axes already selected (:meth:`select`).
        owner: an object to keep open while the volume is used (a ``TiffFile``); closed by :meth:`close`.
    """

    def __init__(
        self, data: Any, axes: str, *, name: str = "array", fixed: Mapping[str, int] | None = None, owner: Any = None
    ) -> None:
        self.data = data
        self.name = name
        self.full_axes = check_axes(axes, tuple(data.shape), name)
        self.fixed = dict(fixed or {})
        self._owner = owner

    # -- shape ---------------------------------------------------------------

    @property
    def axes(self) -> str:
        """The axes left after :meth:`select`, in storage order (e.g. ``"ZYX"``)."""
        return "".join(a for a in self.full_axes if a not in self.fixed)

    @property
    def sizes(self) -> dict[str, int]:
        """Axis letter -> length, for the axes left after :meth:`select`."""
        return {a: int(n) for a, n in zip(self.full_axes, self.data.shape) if a not in self.fixed}

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.sizes.values())

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def image_hw(self) -> tuple[int, int]:
        """``(H, W)`` of every plane."""
        sizes = self.sizes
        return sizes["Y"], sizes["X"]

    @property
    def stack_axis(self) -> str:
        """The axis planes are stacked along (``Z``, else ``T``); see the module docstring.

        Raises:
            ImageError: no stack axis, several, or a channel axis that must be selected first.
        """
        sizes = self.sizes
        if "C" in sizes and sizes["C"] not in COLOUR_CHANNELS:
            raise ImageError(f"{self.name}: {sizes['C']} channels (axes {self.axes}); pick one with C=K (--at C=K)")
        stacks = [a for a in sizes if a in STACK_AXES]
        if not stacks:
            raise ImageError(f"{self.name}: axes {self.axes} hold a single plane, not a stack")
        if len(stacks) > 1:
            choices = " or ".join(f"{a}=K (propagate along {b})" for a, b in (stacks, stacks[::-1]))
            raise ImageError(f"{self.name}: axes {self.axes} stack planes along {' and '.join(stacks)}; fix one: {choices}")
        return stacks[0]

    def __len__(self) -> int:
        return self.sizes[self.stack_axis]

    def select(self, **index: int) -> Volume:
        """A view with the given axes fixed, e.g. ``volume.select(T=3)`` of a ``TZYX`` series is a ``ZYX`` volume.

        Negative indices count from the end. Nothing is read.

        Raises:
            ImageError: an axis that is not (or no longer) there, ``Y`` / ``X``, or an index out of range.
        """
        fixed = dict(self.fixed)
        sizes = self.sizes
        for axis, value in index.items():
            axis = axis.upper()
            if axis in "YX":
                raise ImageError(f"{self.name}: cannot fix the plane axis {axis}")
            if axis not in sizes:
                raise ImageError(f"{self.name}: no axis {axis} to fix among {self.axes}")
            value = int(value)
            if not -sizes[axis] <= value < sizes[axis]:
                raise ImageError(f"{self.name}: {axis}={value} is out of range; the volume has {sizes[axis]} along {axis}")
            fixed[axis] = value % sizes[axis]
        return Volume(self.data, self.full_axes, name=self.name, fixed=fixed, owner=self._owner)

    # -- reading -------------------------------------------------------------

    def plane(self, index: int) -> np.ndarray:
        """Plane ``index`` along :attr:`stack_axis`: ``(H, W)`` or ``(H, W, C)``; reads only that plane.

        Raises:
            ImageError: ``index`` out of range, or the file cannot be read.
        """
        stack, count = self.stack_axis, len(self)
        if not 0 <= index < count:
            raise ImageError(f"{self.name}: slice {index} is out of range; {stack} has {count} slices (0 to {count - 1})")
        key: list[Any] = []
        kept: list[str] = []
        for axis in self.full_axes:
            if axis in self.fixed:
                key.append(self.fixed[axis])
            elif axis == stack:
                key.append(int(index))
            else:
                key.append(slice(None))
                kept.append(axis)
        try:
            plane = np.asarray(self.data[tuple(key)])
        except Exception as exc:  # zarr / tifffile / OS errors of a damaged file: one line naming it
            raise ImageError(f"{self.name}: cannot read slice {index} ({exc})") from exc
        order = [kept.index(a) for a in "YXC" if a in kept]
        plane = np.transpose(plane, order)
        return plane[..., 0] if plane.ndim == 3 and plane.shape[2] == 1 else plane

    def close(self) -> None:
        """Release the file behind the volume (a TIFF file handle); reading afterwards fails."""
        if self._owner is not None and hasattr(self._owner, "close"):
            self._owner.close()

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        fixed = ", ".join(f"{a}={i}" for a, i in self.fixed.items())
        return f"Volume({self.name!r}, axes={self.axes!r}, shape={self.shape}{', ' + fixed if fixed else ''})"


def _tiff_axes(series_axes: str, where: str) -> str:
    axes = "".join(_TIFF_AXES.get(a, a) for a in series_axes.upper())
    if len(set(axes)) != len(axes) or set(axes) - set(AXIS_LETTERS):
        raise ImageError(f"{where}: the TIFF's axes {series_axes!r} do not map onto {AXIS_LETTERS}; give them (--axes)")
    return axes


def _open_tiff(path: Path, axes: str | None) -> Volume:
    import tifffile
    import zarr

    try:
        handle = tifffile.TiffFile(str(path))
    except Exception as exc:  # tifffile raises many types for broken files
        raise ImageError(f"{path}: cannot read TIFF ({exc})") from exc
    try:
        series = handle.series[0]
        data = zarr.open_array(series.aszarr(), mode="r")
        return Volume(data, axes or _tiff_axes(series.axes, str(path)), name=str(path), owner=handle)
    except ImageError:
        handle.close()
        raise
    except Exception as exc:
        handle.close()
        raise ImageError(f"{path}: cannot read TIFF ({exc})") from exc


def _ome_level0(group: Any, where: str) -> tuple[Any, str]:
    """The full-resolution array of an OME-Zarr image group and its axes (NGFF 0.4: ``multiscales``; 0.5: ``ome``)."""
    attrs = dict(group.attrs)
    meta = attrs.get("ome", attrs)
    try:
        multiscale = meta["multiscales"][0]
        names = [a["name"] if isinstance(a, dict) else a for a in multiscale["axes"]]
        array = group[multiscale["datasets"][0]["path"]]
    except (KeyError, IndexError, TypeError) as exc:
        raise ImageError(f"{where}: a Zarr group without OME-Zarr multiscales ({exc}); give the array's path") from exc
    return array, "".join(str(n).upper() for n in names)


def _open_zarr(path: Path, axes: str | None) -> Volume:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ImageError(f"{path}: cannot open as Zarr ({exc})") from exc
    if isinstance(node, zarr.Group):
        array, found = _ome_level0(node, str(path))
        return Volume(array, axes or found, name=str(path))
    return Volume(node, axes or default_axes(tuple(node.shape), str(path)), name=str(path))


def open_volume(path: str | os.PathLike, axes: str | None = None) -> Volume:
    """Open a TIFF, ``.npy``, Zarr or OME-Zarr volume lazily (see the module docstring).

    Args:
        path: the file (TIFF, ``.npy``) or folder (Zarr, OME-Zarr).
        axes: the axis order (e.g. ``"ZYX"``); overrides what the file says.

    Raises:
        ImageError: a missing, unreadable or unsupported file, or axes that do not fit; naming ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ZARR_SUFFIX:
        volume = _open_zarr(path, axes)
    elif suffix in (".tif", ".tiff"):
        volume = _open_tiff(path, axes)
    elif suffix == ".npy":
        try:
            data = np.load(str(path), mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise ImageError(f"{path}: cannot read NumPy file ({exc})") from exc
        volume = Volume(data, axes or default_axes(data.shape, str(path)), name=str(path))
    else:
        raise ImageError(f"{path}: unsupported volume type {path.suffix!r}; use .tif, .tiff, .npy, .zarr or an OME-Zarr folder")
    return volume


#: Percentiles of the sampled intensities mapped to 0 and 255 (as :func:`segprompt.io.to_rgb_uint8` does per image).
WINDOW_PERCENTILES = (0.5, 99.5)
#: Planes sampled to choose the intensity window, and intensities kept per plane.
WINDOW_SAMPLE_PLANES = 16
_WINDOW_SAMPLE_VALUES = 65536


def intensity_window(volume: Volume, planes: int = WINDOW_SAMPLE_PLANES) -> tuple[float, float] | None:
    """One ``(low, high)`` intensity window for every slice, or ``None`` for data already 8-bit.

    :func:`segprompt.io.to_rgb_uint8` scales each image by its own
    percentiles; slice by slice that would make the brightness flicker through
    a volume, and a backend would see the same tissue differently on
    neighbouring slices. Here the 0.5th / 99.5th percentiles are taken once,
    over up to ``planes`` evenly spaced slices (a 2 GB volume is not read
    whole). Float data whose sampled values lie in ``[0, 1]`` gets ``(0, 1)``.
    """
    if volume.dtype in (np.dtype(np.uint8), np.dtype(bool)):
        return None
    count = len(volume)
    indices = np.unique(np.linspace(0, count - 1, min(count, planes)).round().astype(int))
    samples = []
    for index in indices:
        values = np.asarray(volume.plane(int(index)), dtype=np.float64).ravel()
        step = max(1, values.size // _WINDOW_SAMPLE_VALUES)
        samples.append(values[::step])
    values = np.concatenate(samples)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    if np.issubdtype(volume.dtype, np.floating) and values.min() >= 0.0 and values.max() <= 1.0:
        return 0.0, 1.0
    low, high = np.percentile(values, WINDOW_PERCENTILES)
    return float(low), float(high if high > low else low + 1.0)


class SliceImages:
    """The slices of a volume as the ``(H, W, 3)`` uint8 RGB images backends take, one intensity window for all.

    Args:
        volume: a volume with one stack axis (:attr:`Volume.stack_axis`).
        window: ``(low, high)`` mapped to ``0`` / ``255``; ``"auto"``:
            :func:`intensity_window`; ``None``: 8-bit data passed as it is.

    ``images[k]`` reads slice ``k`` from the volume each time it is asked for
    (the embeddings, not the pixels, are what is worth keeping).
    """

    def __init__(self, volume: Volume, window: tuple[float, float] | None | str = "auto") -> None:
        #: The axis the slices are taken along (raises a one-line error for a volume without exactly one).
        self.axis = volume.stack_axis
        self.volume = volume
        self.window = intensity_window(volume) if window == "auto" else window

    def __len__(self) -> int:
        return len(self.volume)

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.volume.image_hw

    def __getitem__(self, index: int) -> np.ndarray:
        plane = self.volume.plane(int(index))
        if self.window is not None:
            low, high = self.window
            scaled = (np.asarray(plane, np.float64) - low) * (255.0 / (high - low))
            plane = np.clip(np.rint(np.nan_to_num(scaled, nan=0.0)), 0, 255).astype(np.uint8)
        try:
            return to_rgb_uint8(plane)
        except ImageError as exc:
            raise ImageError(f"{self.volume.name}: slice {index}: {exc}") from exc


__all__ = [
    "AXIS_LETTERS",
    "SliceImages",
    "Volume",
    "check_axes",
    "default_axes",
    "intensity_window",
    "open_volume",
]
