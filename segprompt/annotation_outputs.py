"""One folder per annotated image: labels, COCO, ``objects.csv``, an overlay and the replayable session.

What ``segprompt everything`` / ``refine`` / ``replay`` write and the napari
widget's *export* button writes, from an
:class:`~segprompt.annotation.AnnotationSession`:

* ``labels.tif``: the label map, uint16 (uint32 when an id exceeds 65535), zlib;
* ``coco.json``: COCO with RLE masks, categories from the class names;
* ``objects.csv``: one row per object (id, class, score, area, box, backend,
  model id, source, prompts);
* ``overlay.png``: the objects over the image;
* ``labels.session.json``: the session file (beside ``labels.tif`` under the
  name :meth:`~segprompt.annotation.AnnotationSession.load` looks for), which
  ``segprompt replay`` re-runs;
* with ``ome_zarr``: ``objects.ome.zarr`` (NGFF 0.5: image pyramid + labels).

All files but the Zarr folder are written together, all or none
(:func:`~segprompt.atomic.write_files`); the Zarr folder is replaced
atomically on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .annotation import AnnotationSession
from .atomic import check_writable, check_writable_dir, write_files
from .export import coco_text, label_tiff_bytes, objects_csv_text, write_ome_zarr
from .io import image_bytes, overlay
from .session_file import default_session_path, session_json

LABELS_FILE = "labels.tif"
COCO_FILE = "coco.json"
CSV_FILE = "objects.csv"
OVERLAY_FILE = "overlay.png"
SESSION_FILE = default_session_path(LABELS_FILE).name
ZARR_FOLDER = "objects.ome.zarr"


def output_paths(folder: str | os.PathLike, ome_zarr: bool = False) -> dict[str, Path]:
    """``{kind: path}`` of every output in ``folder``."""
    folder = Path(folder)
    paths = {
        "labels": folder / LABELS_FILE,
        "coco": folder / COCO_FILE,
        "csv": folder / CSV_FILE,
        "overlay": folder / OVERLAY_FILE,
        "session": folder / SESSION_FILE,
    }
    if ome_zarr:
        paths["ome-zarr"] = folder / ZARR_FOLDER
    return paths


def check_outputs(folder: str | os.PathLike, ome_zarr: bool = False) -> None:
    """Before any work: ``folder`` is (or can be made) a folder accepting the outputs.

    Raises:
        StorageError: naming the folder or file and the reason.
    """
    check_writable_dir(folder)
    paths = output_paths(folder, ome_zarr)
    zarr = paths.pop("ome-zarr", None)
    check_writable(paths.values())
    if zarr is not None:
        check_writable_dir(zarr)


def write_outputs(
    folder: str | os.PathLike, session: AnnotationSession, image_name: str, ome_zarr: bool = False
) -> dict[str, Path]:
    """Write the session's objects to ``folder`` (module docstring); return ``{kind: path}``.

    Args:
        image_name: the image's file name, as COCO's ``file_name``.
    """
    paths = output_paths(folder, ome_zarr)
    labels = np.array(session.labels)
    objects = session.objects
    image = session.embedding.image
    record = session.record(LABELS_FILE, Path(folder))
    write_files({
        paths["labels"]: label_tiff_bytes(labels, str(paths["labels"])),
        paths["coco"]: coco_text(labels, objects, image_name).encode("utf-8"),
        paths["csv"]: objects_csv_text(labels, objects, str(paths["csv"])).encode("utf-8"),
        paths["overlay"]: image_bytes(paths["overlay"], overlay(image, labels)),
        paths["session"]: session_json(record).encode("utf-8"),
    })
    if ome_zarr:
        write_ome_zarr(paths["ome-zarr"], image, labels, objects, name=Path(image_name).stem)
    return paths


__all__ = [
    "COCO_FILE",
    "CSV_FILE",
    "LABELS_FILE",
    "OVERLAY_FILE",
    "SESSION_FILE",
    "ZARR_FOLDER",
    "check_outputs",
    "output_paths",
    "write_outputs",
]
