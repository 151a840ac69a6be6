"""Export and import of annotated objects: COCO JSON (RLE), label TIFF / PNG, OME-Zarr, ``objects.csv``.

Every writer takes the ``(H, W)`` integer label map (``0`` = background, one id
per object, no overlaps: the annotation session's map) and the objects' records
(anything with ``label``, ``class_name``, ``score``, ``backend`` and
``model_id`` attributes: :class:`~segprompt.annotation.AnnotatedObject` or
:class:`ObjectInfo`). Areas and boxes are always measured on the label map, so
a hand-painted correction is exported as painted. Every file is written to a
temporary name and renamed (:mod:`segprompt.atomic`; :func:`~segprompt.atomic.atomic_directory`
for the Zarr folder); the ``*_bytes`` / ``*_text`` forms give the content, so
a caller writing several files can write them all or none
(:func:`~segprompt.atomic.write_files`).

COCO
    One ``images`` entry; ``categories`` are the sorted distinct class names,
    ids ``1..K``; one annotation per object whose ``id`` is the object's id,
    ``segmentation`` its compressed RLE (pycocotools, column-major as COCO
    defines it, ``counts`` as an ASCII string), ``area`` and ``bbox``
    (``[x, y, width, height]``) from pycocotools, ``iscrowd`` 0, ``score``
    when known, ``backend`` and ``model_id`` when known. :func:`read_coco` decodes it back into the same label map.

Label TIFF
    uint16, or uint32 when an id exceeds 65535; zlib-compressed.

OME-Zarr
    NGFF 0.5 on Zarr v3 (:func:`write_ome_zarr`): the image as a multiscale
    ``(c, y, x)`` uint8 pyramid, the objects as the label image
    ``labels/objects`` (same axes, one channel, nearest-neighbour pyramid) with
    ``image-label`` colours and per-object properties (class, score, backend, model id).

``objects.csv``
    One row per object: id, class, score, area, box ``x0, y0, x1, y1``
    (``x1`` / ``y1`` exclusive, original pixels), backend, model id, source,
    prompts (how many made it). :func:`read_objects_csv` reads the records back.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from .atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from .errors import DatasetError, ImageError
from .io import OVERLAY_COLOURS, to_rgb_uint8, write_mask

#: Class name of an object nobody named.
DEFAULT_CLASS = "object"
#: OME-Zarr (NGFF) metadata version written by :func:`write_ome_zarr`.
NGFF_VERSION = "0.5"
#: Chunk side of the OME-Zarr arrays, px.
ZARR_CHUNK = 512
#: The OME-Zarr pyramid halves the image until its longest side is at most this.
ZARR_SMALLEST_SIDE = 512
CSV_FIELDS = ("id", "class", "score", "area", "x0", "y0", "x1", "y1", "backend", "model_id", "source", "prompts")


class LabelledObject(Protocol):
    """What the writers read of an object."""

    label: int
    class_name: str
    score: float
    backend: str
    model_id: str


@dataclass(frozen=True)
class ObjectInfo:
    """An object's record as read back from a file (:func:`read_coco`, :func:`read_ome_zarr_labels`).

    Attributes:
        label: its id in the label map.
        class_name: its class.
        score: its score, NaN when the file gives none.
        backend: the backend that made it, ``""`` when unknown.
        model_id: the weights that made it, ``""`` when unknown.
    """

    label: int
    class_name: str = DEFAULT_CLASS
    score: float = float("nan")
    backend: str = ""
    model_id: str = ""


def _check_labels(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ImageError(f"{what}: expected an (H, W) integer label map, got {labels.dtype} {labels.shape}")
    if labels.min(initial=0) < 0:
        raise ImageError(f"{what}: label ids must be >= 0, found {labels.min()}")
    return labels


def _records_by_id(labels: np.ndarray, objects: Sequence[LabelledObject]) -> dict[int, LabelledObject]:
    """The records of the ids present in ``labels``, in increasing id order; an unknown id gets a default record."""
    records = {int(o.label): o for o in objects}
    ids = np.unique(labels)
    return {int(i): records.get(int(i), ObjectInfo(int(i))) for i in ids[ids != 0]}


def _object_crops(labels: np.ndarray, ids: Sequence[int]) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray]]:
    """``(id, (rows, cols) slices of its bounding box, bool mask inside it)`` for each id present in ``labels``."""
    from scipy import ndimage as ndi

    windows = ndi.find_objects(labels, max_label=max(ids, default=0))
    for label in ids:
        window = windows[label - 1]
        yield label, window, labels[window] == label


def _score(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


# -- COCO -------------------------------------------------------------------


def coco_record(
    labels: np.ndarray, objects: Sequence[LabelledObject], image_name: str, image_id: int = 1
) -> dict[str, Any]:
    """The COCO dictionary of one image's objects (see the module docstring)."""
    from pycocotools import mask as mask_utils

    labels = _check_labels(labels, "COCO export")
    records = _records_by_id(labels, objects)
    names = sorted({r.class_name or DEFAULT_CLASS for r in records.values()})
    category = {name: index + 1 for index, name in enumerate(names)}
    height, width = labels.shape
    annotations = []
    for label, window, crop in _object_crops(labels, list(records)):
        record = records[label]
        mask = np.zeros(labels.shape, np.uint8, order="F")
        mask[window] = crop
        rle = mask_utils.encode(mask)
        annotation = {
            "id": label,
            "image_id": image_id,
            "category_id": category[record.class_name or DEFAULT_CLASS],
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": int(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": 0,
        }
        if _score(record.score) is not None:
            annotation["score"] = _score(record.score)
        if record.backend:
            annotation["backend"] = record.backend
        if record.model_id:
            annotation["model_id"] = record.model_id
        annotations.append(annotation)
    return {
        "info": {"description": "segprompt annotation", "version": "1.0"},
        "images": [{"id": image_id, "file_name": image_name, "height": height, "width": width}],
        "categories": [{"id": category[name], "name": name, "supercategory": ""} for name in names],
        "annotations": annotations,
    }


def coco_text(labels: np.ndarray, objects: Sequence[LabelledObject], image_name: str) -> str:
    """The COCO JSON file of one image's objects (:func:`coco_record`)."""
    return json.dumps(coco_record(labels, objects, image_name))


def write_coco(
    path: str | os.PathLike, labels: np.ndarray, objects: Sequence[LabelledObject], image_name: str
) -> None:
    """Write one image's objects as a COCO JSON file with RLE masks, atomically."""
    atomic_write_text(path, coco_text(labels, objects, image_name))


def _decode_segmentation(segmentation: Any, height: int, width: int, where: str) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO segmentation: compressed / uncompressed RLE or polygons."""
    from pycocotools import mask as mask_utils

    try:
        if isinstance(segmentation, dict):
            counts = segmentation["counts"]
            if list(segmentation["size"]) != [height, width]:
                raise DatasetError(f"{where}: size {segmentation['size']} differs from the image's [{height}, {width}]")
            if isinstance(counts, list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(segmentation, height, width)
            else:
                rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        elif isinstance(segmentation, list):  # polygons
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        else:
            raise DatasetError(f"{where}: expected an RLE object or a list of polygons, got {type(segmentation).__name__}")
        return mask_utils.decode(rle).astype(bool)
    except DatasetError:
        raise
    except Exception as exc:  # pycocotools raises bare TypeError / ValueError for bad counts
        raise DatasetError(f"{where}: cannot decode the segmentation ({exc})") from exc


def read_coco(path: str | os.PathLike, image: str | int | None = None) -> tuple[np.ndarray, list[ObjectInfo]]:
    """Read one image's objects from a COCO JSON file as a label map and records.

    Args:
        path: the COCO file.
        image: which image: its ``file_name`` or ``id``; may be ``None`` when
            the file holds one image.

    Returns:
        ``(labels, objects)``: an ``(H, W)`` int32 label map (uint32 when an id
        needs it) in which each annotation's ``id`` marks its pixels, and one
        :class:`ObjectInfo` per annotation (class from its category). Where
        annotations overlap, the pixel stays with the annotation listed first.

    Raises:
        DatasetError: unreadable or malformed file, naming the file and field.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the COCO file ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: invalid JSON ({exc})") from exc
    try:
        images = record["images"]
        categories = {int(c["id"]): str(c["name"]) for c in record.get("categories", [])}
        annotations = record["annotations"]
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a COCO file (missing or malformed {exc})") from exc
    chosen = [
        entry for entry in images
        if image is None or entry.get("file_name") == image or (isinstance(image, int) and entry.get("id") == image)
    ]
    if len(chosen) != 1:
        names = ", ".join(str(entry.get("file_name")) for entry in images[:5])
        wanted = "one image" if image is None else f"image {image!r}"
        raise DatasetError(f"{path}: expected {wanted}, found {len(chosen)} of {len(images)} ({names})")
    entry = chosen[0]
    try:
        height, width, image_id = int(entry["height"]), int(entry["width"]), entry["id"]
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: images[...]: missing or malformed {exc}") from exc
    mine = [(index, a) for index, a in enumerate(annotations) if a.get("image_id") == image_id]
    ids = [a.get("id") for _, a in mine]
    if any(not isinstance(i, int) or i < 1 for i in ids) or len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: annotation ids must be distinct integers >= 1 to become label ids")
    labels = np.zeros((height, width), np.uint32 if max(ids, default=0) > np.iinfo(np.int32).max else np.int32)
    objects = []
    for index, annotation in mine:
        where = f"{path}: annotations[{index}] (id {annotation['id']})"
        mask = _decode_segmentation(annotation.get("segmentation"), height, width, f"{where}.segmentation")
        labels[mask & (labels == 0)] = annotation["id"]
        category = annotation.get("category_id")
        if category not in categories:
            raise DatasetError(f"{where}: category_id {category!r} is not in categories")
        score = annotation.get("score")
        objects.append(
            ObjectInfo(annotation["id"], categories[category], float("nan") if score is None else float(score),
                       str(annotation.get("backend", "")), str(annotation.get("model_id", "")))
        )
    return labels, objects


# -- label images -------------------------------------------------------------


def label_tiff_bytes(labels: np.ndarray, what: str = "label TIFF") -> bytes:
    """A zlib-compressed uint16 TIFF of ``labels`` (uint32 when an id exceeds 65535); ``what`` names it in errors."""
    import tifffile

    labels = _check_labels(labels, what)
    dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    if labels.max(initial=0) > np.iinfo(np.uint32).max:
        raise ImageError(f"{what}: label ids up to {labels.max()} do not fit uint32")
    buffer = _io.BytesIO()
    tifffile.imwrite(buffer, labels.astype(dtype), compression="zlib")
    return buffer.getvalue()


def write_label_tiff(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write ``labels`` as a zlib-compressed uint16 TIFF (uint32 when an id exceeds 65535), atomically."""
    atomic_write_bytes(path, label_tiff_bytes(labels, str(path)))


def write_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write ``labels`` as an 8- or 16-bit PNG (:func:`segprompt.io.write_mask`; ids above 65535 need TIFF)."""
    write_mask(path, _check_labels(labels, str(path)))


# -- objects.csv --------------------------------------------------------------


def objects_csv_text(labels: np.ndarray, objects: Sequence[LabelledObject], what: str = "objects.csv") -> str:
    """One row per object present in ``labels`` (see the module docstring).

    ``source`` and ``prompts`` (the number of prompts that made it) come from
    the records when they have them (:class:`~segprompt.annotation.AnnotatedObject`).
    """
    labels = _check_labels(labels, what)
    records = _records_by_id(labels, objects)
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for label, (row_window, col_window), crop in _object_crops(labels, list(records)):
        record = records[label]
        score = _score(record.score)
        writer.writerow([
            label,
            record.class_name or DEFAULT_CLASS,
            "" if score is None else f"{score:.6g}",
            int(crop.sum()),
            col_window.start, row_window.start, col_window.stop, row_window.stop,
            record.backend,
            record.model_id,
            getattr(record, "source", ""),
            len(getattr(record, "prompts", ())),
        ])
    return buffer.getvalue()


def write_objects_csv(path: str | os.PathLike, labels: np.ndarray, objects: Sequence[LabelledObject]) -> None:
    """Write :func:`objects_csv_text` to ``path``, atomically."""
    atomic_write_text(path, objects_csv_text(labels, objects, str(path)))


def read_objects_csv(path: str | os.PathLike) -> list[ObjectInfo]:
    """The object records of an ``objects.csv`` (id, class, score, backend, model id; other columns ignored).

    Only ``id`` is required, so a table from another tool with ``id`` and
    ``class`` columns names the classes of a label image too.

    Raises:
        DatasetError: unreadable file, no ``id`` column, or a bad id / score, naming the file and row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the objects table ({exc.strerror or exc})") from exc
    reader = csv.DictReader(_io.StringIO(text))
    if reader.fieldnames is None or "id" not in reader.fieldnames:
        raise DatasetError(f"{path}: not an objects table (no 'id' column; columns: {', '.join(reader.fieldnames or [])})")
    objects = []
    for line, row in enumerate(reader, start=2):
        try:
            label = int(row["id"])
            score = float(row["score"]) if row.get("score") else float("nan")
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: line {line}: bad id or score ({exc})") from exc
        if label < 1:
            raise DatasetError(f"{path}: line {line}: id must be >= 1, got {label}")
        objects.append(ObjectInfo(label, row.get("class") or DEFAULT_CLASS, score, row.get("backend") or "",
                                  row.get("model_id") or ""))
    ids = [o.label for o in objects]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: id {next(i for i in ids if ids.count(i) > 1)} appears twice")
    return objects


# -- OME-Zarr -----------------------------------------------------------------


def pyramid_factors(image_hw: tuple[int, int]) -> list[int]:
    """Downsampling factors 1, 2, 4, ... until the longest side is at most :data:`ZARR_SMALLEST_SIDE`."""
    factors = [1]
    while max(image_hw) / factors[-1] > ZARR_SMALLEST_SIDE:
        factors.append(factors[-1] * 2)
    return factors


#: Downsampling of the pyramid levels: NGFF ``multiscales`` "type" and "metadata".
_IMAGE_DOWNSAMPLING = ("local mean", {"description": "each level halves y and x by area averaging",
                                      "method": "cv2.resize", "kwargs": {"interpolation": "INTER_AREA"}})
LABEL_DOWNSAMPLING = ("nearest", {"description": "each level keeps every second pixel along y and x",
                                  "method": "numpy slicing", "kwargs": {"step": 2}})
#: NGFF axis types of the axis names segprompt writes.
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def multiscales_metadata(
    name: str, factors: list[int], downsampling: tuple[str, dict[str, Any]], leading_axes: Sequence[str] = ("c",)
) -> list[dict[str, Any]]:
    """NGFF ``multiscales`` for ``(*leading_axes, y, x)`` levels ``"0", "1", ...`` halved along y and x only.

    ``leading_axes``: NGFF axis names before ``y, x`` (``"c"`` for a 2-D image,
    ``"z"`` or ``"t"`` for a stack), each kept at scale 1.
    """
    axes = [*leading_axes, "y", "x"]
    return [
        {
            "name": name,
            "axes": [{"name": axis, "type": _AXIS_TYPES[axis]} for axis in axes],
            "datasets": [
                {
                    "path": str(level),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0] * len(leading_axes) + [float(f), float(f)]}
                    ],
                }
                for level, f in enumerate(factors)
            ],
            "type": downsampling[0],
            "metadata": downsampling[1],
        }
    ]


def image_label_metadata(records: dict[int, LabelledObject], source_image: str | None) -> dict[str, Any]:
    """NGFF ``image-label`` of a label image: segprompt's overlay colours and each object's class, score, backend.

    ``records``: id -> record, in the order to list them. ``source_image``:
    the relative path of the image the labels belong to, or ``None`` for a
    label image written on its own.
    """
    metadata: dict[str, Any] = {} if source_image is None else {"source": {"image": source_image}}
    if records:  # the spec asks for at least one entry when the lists are present
        metadata["colors"] = [
            {"label-value": label, "rgba": [*(int(c) for c in OVERLAY_COLOURS[(label - 1) % len(OVERLAY_COLOURS)]), 255]}
            for label in records
        ]
        metadata["properties"] = [
            {"label-value": label, "class": r.class_name or DEFAULT_CLASS, "score": _score(r.score),
             "backend": r.backend, "model_id": r.model_id}
            for label, r in records.items()
        ]
    return metadata


def _write_levels(group: Any, levels: list[np.ndarray]) -> None:
    for index, level in enumerate(levels):
        chunks = (level.shape[0], min(ZARR_CHUNK, level.shape[1]), min(ZARR_CHUNK, level.shape[2]))
        array = group.create_array(
            str(index), shape=level.shape, dtype=level.dtype, chunks=chunks, dimension_names=["c", "y", "x"]
        )
        array[...] = level


def write_ome_zarr(
    path: str | os.PathLike,
    image: np.ndarray,
    labels: np.ndarray,
    objects: Sequence[LabelledObject],
    name: str = "image",
) -> None:
    """Write the image and its objects as an OME-Zarr (NGFF 0.5, Zarr v3) folder, atomically.

    Layout: ``path/`` is the image group (levels ``0, 1, ...`` of shape
    ``(3, H / f, W / f)``, uint8 RGB, local-mean downsampled), ``path/labels``
    lists ``"objects"``, and ``path/labels/objects`` is the label image (levels
    ``(1, H / f, W / f)``, every ``f``-th pixel) with ``image-label`` colours
    (segprompt's overlay colours) and properties ``label-value``, ``class``,
    ``score``, ``backend``, ``model_id``. Chunks are :data:`ZARR_CHUNK` px square.

    Raises:
        ImageError: ``labels`` is not an integer map of the image's size.
        SegpromptError: ``zarr`` is not installed.
    """
    import cv2

    try:
        import zarr
    except ImportError as exc:  # an optional dependency on Python < 3.11
        raise ImageError(f"{path}: OME-Zarr export needs the 'zarr' package (pip install 'zarr>=3')") from exc
    rgb = to_rgb_uint8(image)
    labels = _check_labels(labels, str(path))
    if labels.shape != rgb.shape[:2]:
        raise ImageError(f"{path}: label map {labels.shape} does not match the image {rgb.shape[:2]}")
    records = _records_by_id(labels, objects)
    factors = pyramid_factors(labels.shape)
    image_levels, label_levels = [], []
    for factor in factors:
        size = (max(1, -(-rgb.shape[1] // factor)), max(1, -(-rgb.shape[0] // factor)))
        image_levels.append(np.moveaxis(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), -1, 0))
        label_levels.append(labels[None, ::factor, ::factor])
    label_dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    with atomic_directory(path) as temp:
        root = zarr.open_group(store=str(temp), mode="w", zarr_format=3)
        root.attrs["ome"] = {"version": NGFF_VERSION, "multiscales": multiscales_metadata(name, factors, _IMAGE_DOWNSAMPLING)}
        _write_levels(root, image_levels)
        labels_group = root.create_group("labels")
        labels_group.attrs["ome"] = {"version": NGFF_VERSION, "labels": ["objects"]}
        objects_group = labels_group.create_group("objects")
        objects_group.attrs["ome"] = {
            "version": NGFF_VERSION,
            "multiscales": multiscales_metadata("objects", factors, LABEL_DOWNSAMPLING),
            "image-label": image_label_metadata(records, source_image="../../"),
        }
        _write_levels(objects_group, [level.astype(label_dtype) for level in label_levels])


def read_ome_zarr_labels(path: str | os.PathLike, name: str = "objects") -> tuple[np.ndarray, list[ObjectInfo]]:
    """The full-resolution ``(H, W)`` label image ``labels/<name>`` of an OME-Zarr folder and its objects.

    Raises:
        DatasetError: not an OME-Zarr folder with that label image.
    """
    import zarr

    path = Path(path)
    try:
        group = zarr.open_group(store=str(path / "labels" / name), mode="r")
        ome = group.attrs["ome"]
        level = ome["multiscales"][0]["datasets"][0]["path"]
        labels = np.asarray(group[level][...])
    except (FileNotFoundError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: no OME-Zarr label image labels/{name} ({exc})") from exc
    if labels.ndim == 3 and labels.shape[0] == 1:
        labels = labels[0]
    properties = ome.get("image-label", {}).get("properties", [])
    objects = [
        ObjectInfo(int(p["label-value"]), str(p.get("class", DEFAULT_CLASS)),
                   float("nan") if p.get("score") is None else float(p["score"]), str(p.get("backend", "")),
                   str(p.get("model_id", "")))
        for p in properties
    ]
    return labels, objects


# -- any of them --------------------------------------------------------------


def read_labels(path: str | os.PathLike, image: str | int | None = None) -> tuple[np.ndarray, list[ObjectInfo]]:
    """An ``(H, W)`` label map and its object records from any file segprompt writes or reads.

    ``.json``: COCO (:func:`read_coco`, ``image`` picks one of several);
    a ``.zarr`` folder: OME-Zarr (:func:`read_ome_zarr_labels`); anything else:
    a label image (PNG, TIFF, ``.npy``; :func:`segprompt.io.read_mask`), whose
    objects have no records (an empty list).

    Raises:
        DatasetError, ImageError: an unreadable or malformed file, naming it.
    """
    from .io import read_mask

    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_coco(path, image)
    if path.suffix.lower() == ".zarr" or (path / "zarr.json").is_file():
        return read_ome_zarr_labels(path)
    labels = read_mask(path)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ImageError(f"{path}: a label image holds integer ids, got {labels.dtype}")
    return labels, []


def read_class_names(path: str | os.PathLike, image: str | int | None = None) -> dict[int, str]:
    """``{id: class name}`` from a COCO file (``.json``) or an objects table (``.csv``).

    Raises:
        DatasetError: another kind of file, or an unreadable one.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        objects = read_objects_csv(path)
    elif path.suffix.lower() == ".json":
        objects = read_coco(path, image)[1]
    else:
        raise DatasetError(f"{path}: class names come from a COCO file (.json) or an objects table (.csv)")
    return {o.label: o.class_name for o in objects}


__all__ = [
    "CSV_FIELDS",
    "DEFAULT_CLASS",
    "LABEL_DOWNSAMPLING",
    "LabelledObject",
    "NGFF_VERSION",
    "ObjectInfo",
    "coco_record",
    "coco_text",
    "label_tiff_bytes",
    "objects_csv_text",
    "read_class_names",
    "image_label_metadata",
    "multiscales_metadata",
    "pyramid_factors",
    "read_coco",
    "read_labels",
    "read_objects_csv",
    "read_ome_zarr_labels",
    "write_coco",
    "write_label_png",
    "write_label_tiff",
    "write_objects_csv",
    "write_ome_zarr",
]
