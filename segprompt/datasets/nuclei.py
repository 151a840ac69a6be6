"""DSB 2018 nuclei: uint16 instance label PNGs (0 = background, 1..N = nucleus); image type in ``index.csv``."""

from __future__ import annotations

from .base import Sample
from .files import load_image, load_mask
from .lazy import Entry
from .plain import PairedFolderLayout, meta_of, source_of
from .registry import register_layout


@register_layout
class DsbNuclei(PairedFolderLayout):
    name = "dsb2018_nuclei"
    domain = "microscopy"
    summary = "DSB 2018 nuclei: instance label maps, one object per nucleus; image type in index.csv"
    folder_name = "dsb2018_nuclei"
    class_names = ("nucleus",)
    index_file = "index.csv"
    index_key = "id"
    index_fields = {"image_type": "image_type"}

    def read(self, entry: Entry) -> Sample:
        image = load_image(entry.path)
        mask = load_mask(entry.info["mask"], image.shape)
        return Sample(entry.id, image, mask, "instance", self.class_names, source=source_of(entry), meta=meta_of(entry))
