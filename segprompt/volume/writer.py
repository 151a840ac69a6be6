"""Label volumes out: a multi-page TIFF or an OME-Zarr (NGFF 0.5) folder, written atomically, plane by plane.

A label volume is ``(N, H, W)`` integer ids (``0`` background, one id per
object) along one stack axis, ``"ZYX"`` or ``"TYX"``; anything indexable like
that works (a NumPy array, :class:`~segprompt.volume.session.VolumeSession`'s
``labels`` view), and planes are asked for one at a time, so a volume larger
than the memory streams to disk.

TIFF
    One zlib-compressed page per plane, uint16 (uint32 when an id exceeds
    65535), tifffile ``shaped`` metadata naming the axes (read back by
    :func:`~segprompt.volume.reader.open_volume` with those axes). Written to a
    temporary file and renamed (:func:`segprompt.atomic.atomic_path`).
OME-Zarr
    A label image on its own (no copy of the source volume, which may be
    gigabytes): the root group holds the NGFF 0.5 ``multiscales`` (axes
    ``z|t, y, x``; levels halve y and x by taking every second pixel, the
    stack axis is kept) and ``image-label`` (segprompt's colours, each
    object's class, score and backend), Zarr v3 chunks of one plane by
    :data:`~segprompt.export.ZARR_CHUNK` px. Written into a temporary folder
    renamed onto the target (:func:`segprompt.atomic.atomic_directory`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from ..atomic import atomic_directory, atomic_path, check_writable, check_writable_dir
from ..errors import ImageError, StorageError
from ..export import (
    LABEL_DOWNSAMPLING,
    NGFF_VERSION,
    ZARR_CHUNK,
    LabelledObject,
    ObjectInfo,
    image_label_metadata,
    multiscales_metadata,
    pyramid_factors,
)

#: Suffixes :func:`write_label_volume` writes (``.ome.zarr`` ends in ``.zarr``).
LABEL_VOLUME_SUFFIXES = (".tif", ".tiff", ".zarr")
#: Axes of a label volume.
LABEL_VOLUME_AXES = ("ZYX", "TYX")


class LabelPlanes(Protocol):
    """An ``(N, H, W)`` label volume read plane by plane: ``labels[k]`` is an ``(H, W)`` integer array."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


def check_label_volume_output(path: str | os.PathLike) -> None:
    """Refuse an output the writer cannot write, before any work: its type, its folder, an existing non-Zarr folder.

    Raises:
        ImageError: an unsupported suffix.
        StorageError: an unwritable place, or a folder at ``path`` that is not a Zarr store (never replaced).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_VOLUME_SUFFIXES:
        raise ImageError(f"{path}: unsupported label volume type {path.suffix!r}; use .tif, .tiff or .ome.zarr")
    if suffix == ".zarr":
        if path.exists() and not (path / "zarr.json").is_file() and not (path / ".zgroup").is_file():
            raise StorageError(errno.EEXIST, f"exists and is not a Zarr store, refusing to replace it: {path}")
        check_writable_dir(path.parent)
    else:
        check_writable([path])


def _planes(labels: LabelPlanes, dtype: np.dtype) -> Iterator[np.ndarray]:
    for index in range(labels.shape[0]):
        yield np.asarray(labels[index]).astype(dtype, copy=False)


def _label_dtype(labels: LabelPlanes, where: str) -> np.dtype:
    """uint16, or uint32 when an id needs it; checks every plane is a non-negative ``(H, W)`` integer map."""
    if len(labels.shape) != 3:
        raise ImageError(f"{where}: a label volume must be (N, H, W), got shape {tuple(labels.shape)}")
    largest = 0
    for index in range(labels.shape[0]):
        plane = np.asarray(labels[index])
        if plane.shape != tuple(labels.shape[1:]) or not np.issubdtype(plane.dtype, np.integer):
            raise ImageError(f"{where}: plane {index} is not an integer {tuple(labels.shape[1:])} map ({plane.dtype} {plane.shape})")
        if plane.size and plane.min() < 0:
            raise ImageError(f"{where}: label ids must be >= 0, found {plane.min()} in plane {index}")
        largest = max(largest, int(plane.max(initial=0)))
    if largest > np.iinfo(np.uint32).max:
        raise ImageError(f"{where}: label ids up to {largest} do not fit uint32")
    return np.dtype(np.uint16 if largest <= np.iinfo(np.uint16).max else np.uint32)


def write_label_volume(
    path: str | os.PathLike, labels: LabelPlanes, axes: str = "ZYX", objects: Sequence[LabelledObject] = ()
) -> None:
    """Write an ``(N, H, W)`` label volume as TIFF or OME-Zarr by its suffix (see the module docstring).

    Args:
        path: ``.tif`` / ``.tiff`` or ``.ome.zarr`` (any ``.zarr``).
        labels: the label volume, read plane by plane.
        axes: ``"ZYX"`` or ``"TYX"``.
        objects: records of the ids (class, score, backend) for the OME-Zarr ``image-label`` properties;
            ids without one get a default record.

    Raises:
        ImageError: a bad suffix, axes or label data; StorageError: the disk refused (nothing is left behind).
    """
    path = Path(path)
    axes = axes.upper()
    if axes not in LABEL_VOLUME_AXES:
        raise ImageError(f"{path}: label volume axes must be one of {', '.join(LABEL_VOLUME_AXES)}, got {axes!r}")
    check_label_volume_output(path)
    dtype = _label_dtype(labels, str(path))
    if path.suffix.lower() == ".zarr":
        _write_ome_zarr(path, labels, axes, dtype, objects)
    else:
        import tifffile

        shape = tuple(int(n) for n in labels.shape)
        with atomic_path(path) as temp:
            tifffile.imwrite(
                temp, _planes(labels, dtype), shape=shape, dtype=dtype, compression="zlib",
                photometric="minisblack", metadata={"axes": axes},
            )


def _write_ome_zarr(path: Path, labels: LabelPlanes, axes: str, dtype: np.dtype, objects: Sequence[LabelledObject]) -> None:
    import zarr

    count, height, width = (int(n) for n in labels.shape)
    factors = pyramid_factors((height, width))
    stack = axes[0].lower()
    present: set[int] = set()
    with atomic_directory(path) as temp:
        root = zarr.open_group(store=str(temp), mode="w", zarr_format=3)
        levels: list[Any] = []
        for level, factor in enumerate(factors):
            level_hw = (-(-height // factor), -(-width // factor))
            levels.append(root.create_array(
                str(level), shape=(count, *level_hw), dtype=dtype,
                chunks=(1, min(ZARR_CHUNK, level_hw[0]), min(ZARR_CHUNK, level_hw[1])),
                dimension_names=[stack, "y", "x"], fill_value=0,
            ))
        for index, plane in enumerate(_planes(labels, dtype)):
            present.update(int(i) for i in np.unique(plane) if i != 0)
            for array, factor in zip(levels, factors):
                array[index] = plane[::factor, ::factor]
        known = {int(o.label): o for o in objects}
        records = {label: known.get(label, ObjectInfo(label)) for label in sorted(present)}
        root.attrs["ome"] = {
            "version": NGFF_VERSION,
            "multiscales": multiscales_metadata("labels", factors, LABEL_DOWNSAMPLING, leading_axes=(stack,)),
            "image-label": image_label_metadata(records, source_image=None),
        }


__all__ = ["LABEL_VOLUME_AXES", "LABEL_VOLUME_SUFFIXES", "LabelPlanes", "check_label_volume_output", "write_label_volume"]
