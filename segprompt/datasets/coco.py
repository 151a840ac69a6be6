"""COCO instances JSON (polygons and RLE, decoded through pycocotools).

Open either a JSON file or a folder with ``annotations/instances_<split>.json``
(each such file is a split named ``<split>``). An image's ``file_name`` is
looked up as ``<root>/<split>/<file_name>``, ``<root>/images/<file_name>`` and
``<root>/<file_name>``, where ``<root>`` is the folder above ``annotations/``
(or the JSON's own folder).

Each image is one sample whose mask is an instance label map: annotation
``k`` (1-based, in JSON order) gets label ``k`` and
``meta["instance_classes"][k]`` its category name; ``meta["annotation_ids"]``
maps labels back to COCO ids. Where annotations overlap, smaller ones are
drawn last so that they stay visible. ``iscrowd`` regions are not objects:
they form ``Sample.ignore``. Images without annotations are kept (no objects).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import Problem, Sample
from .lazy import BadFileError, Entry, LazyDataset, OnError
from .files import load_image
from .registry import Layout, register_layout

ANNOTATION_GLOB = "instances_*.json"


def _decode(segmentation: Any, height: int, width: int) -> np.ndarray:
    """``(H, W)`` bool mask of a COCO polygon list or RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


@register_layout
class Coco(Layout):
    name = "coco"
    summary = "COCO instances JSON (polygons / RLE via pycocotools); annotations/instances_<split>.json"
    specificity = 30

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / "annotations").glob(ANNOTATION_GLOB))

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        if root.is_file():
            files = {root.stem.removeprefix("instances_"): root}
            base = root.parent.parent if root.parent.name == "annotations" else root.parent
        else:
            files = {p.stem.removeprefix("instances_"): p for p in sorted((root / "annotations").glob(ANNOTATION_GLOB))}
            base = root
        entries: list[Entry] = []
        problems: list[Problem] = []
        splits: dict[str, list[str]] = {}
        categories: dict[int, str] = {}
        for split, path in files.items():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                categories.update({int(c["id"]): str(c["name"]) for c in data.get("categories", [])})
                split_entries = _entries(data, base, split, path, problems)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append(Problem(str(path), f"unreadable COCO JSON ({type(exc).__name__}: {exc})"))
                continue
            entries += split_entries
            splits[split] = [e.id for e in split_entries]
        class_names = tuple(categories[k] for k in sorted(categories))
        return LazyDataset(
            base.name, self.name, class_names, entries, lambda e: _read(e, categories),
            on_error=on_error, problems=problems, splits=splits if len(splits) > 1 else None,
        )  # fmt: skip


def _entries(data: dict[str, Any], base: Path, split: str, json_path: Path, problems: list[Problem]) -> list[Entry]:
    annotations: dict[int, list[dict[str, Any]]] = {}
    for annotation in data.get("annotations", []):
        annotations.setdefault(int(annotation["image_id"]), []).append(annotation)
    entries = []
    for image in data.get("images", []):
        name = str(image["file_name"])
        image_annotations = annotations.pop(int(image["id"]), [])
        candidates = [base / split / name, base / "images" / name, base / name]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            problems.append(Problem(str(candidates[-1]), f"missing image listed in {json_path.name}"))
            continue
        info = {"hw": (int(image["height"]), int(image["width"])), "annotations": image_annotations, "coco_image_id": int(image["id"]), "json": json_path}
        entries.append(Entry(Path(name).stem, path, info=info))
    for image_id in annotations:
        problems.append(Problem(str(json_path), f"annotations for image id {image_id}, which is not in 'images'"))
    return entries


def _read(entry: Entry, categories: dict[int, str]) -> Sample:
    image = load_image(entry.path)
    height, width = entry.info["hw"]
    if image.shape[:2] != (height, width):
        raise BadFileError(entry.path, f"size mismatch: image is {image.shape[1]}x{image.shape[0]} (W x H), the JSON says {width}x{height}")
    labels = np.zeros((height, width), np.int32)
    ignore = np.zeros((height, width), bool)
    instance_classes: dict[int, str] = {}
    annotation_ids: dict[int, int] = {}
    objects = []
    for annotation in entry.info["annotations"]:
        try:
            mask = _decode(annotation["segmentation"], height, width)
            category = categories[int(annotation["category_id"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadFileError(entry.info["json"], f"annotation {annotation.get('id')}: bad segmentation or category ({exc!r})") from exc
        if annotation.get("iscrowd"):
            ignore |= mask
        else:
            objects.append((annotation, category, mask))
    for label, (annotation, category, _) in enumerate(objects, start=1):
        instance_classes[label] = category
        annotation_ids[label] = int(annotation.get("id", -1))
    for label in sorted(range(1, len(objects) + 1), key=lambda k: -int(objects[k - 1][2].sum())):
        labels[objects[label - 1][2]] = label
    classes = tuple(categories[k] for k in sorted(categories))
    meta = {"instance_classes": instance_classes, "annotation_ids": annotation_ids, "coco_image_id": entry.info["coco_image_id"]}
    return Sample(entry.id, image, labels, "instance", classes, ignore=ignore if ignore.any() else None, source=str(entry.path), meta=meta)
