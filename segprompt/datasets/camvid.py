"""CamVid (SegNet 11-class version): PNG class-index maps 0..10, 11 = Unlabelled (ignore).

``class_names`` are the 11 real classes; pixels of value 11 form
``Sample.ignore``. Class 0 (Sky) is a real class, so there is no background
index: every class present is an object.
"""

from __future__ import annotations

from .base import Sample
from .lazy import Entry
from .plain import PairedFolderLayout, meta_of, read_semantic_sample
from .registry import register_layout

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
UNLABELLED = len(CAMVID_CLASSES)


@register_layout
class CamVid(PairedFolderLayout):
    name = "camvid"
    domain = "urban"
    summary = "CamVid 11 classes: class-index maps, 11 = Unlabelled (ignore)"
    folder_name = "camvid"
    class_names = CAMVID_CLASSES

    def read(self, entry: Entry) -> Sample:
        return read_semantic_sample(
            entry, CAMVID_CLASSES, range(UNLABELLED + 1), "CamVid class-index", UNLABELLED, meta_of(entry)
        )
