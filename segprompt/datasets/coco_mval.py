"""COCO-MVal: one COCO instance per image as a 0/255 mask; its class in ``index.json``.

``classes.txt`` lists the 80 COCO category names (the dataset's
``class_names``); ``index.json`` gives ``class_name`` and ``coco_image_id`` per
sample.
"""

from __future__ import annotations

from pathlib import Path

from .base import Sample
from .lazy import BadFileError, Entry
from .plain import PairedFolderLayout, read_binary_sample, read_classes_txt
from .registry import register_layout


@register_layout
class CocoMVal(PairedFolderLayout):
    name = "coco_mval"
    domain = "common"
    summary = "COCO-MVal: one binary instance per image, class per mask in index.json (80 COCO classes)"
    folder_name = "coco_mval"
    index_file = "index.json"
    index_fields = {"class_name": "class_name", "coco_image_id": "coco_image_id"}

    @classmethod
    def detect(cls, root: Path) -> bool:
        marked = (root / "classes.txt").is_file() and (root / "index.json").is_file()
        return super().detect(root) or (marked and cls.has_pairs(root))

    def dataset_classes(self, root: Path) -> tuple[str, ...]:
        path = root / "classes.txt"
        return read_classes_txt(path) if path.is_file() else ()

    def read(self, entry: Entry) -> Sample:
        if not entry.info.get("class_name"):
            raise BadFileError(entry.path, "no class_name for this image in index.json")
        return read_binary_sample(entry, str(entry.info["class_name"]))
