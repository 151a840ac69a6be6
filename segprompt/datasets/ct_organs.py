"""SAM-Med2D demo CT: one 0/255 mask per organ, the organ named in the mask file name.

Mask files are ``<image stem>_<organ>_<NNN>.png`` (``NNN`` numbers several
masks of one organ, e.g. the two parts of ``hip_left``). Each mask is one
sample (id = mask stem, class = organ), grouped by image so that a split never
separates the organs of one slice. An image without any mask is reported as a
problem (``amos_0507_31`` in the shared copy).
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Problem, Sample
from .files import image_files
from .lazy import Entry
from .plain import PairedFolderLayout, read_binary_sample
from .registry import register_layout

_COPY_SUFFIX = re.compile(r"_\d+$")


def organ_of(mask_stem: str, image_stem: str) -> str:
    """``"amos_0004_75_inferior_vena_cava_000"`` -> ``"inferior_vena_cava"``."""
    return _COPY_SUFFIX.sub("", mask_stem[len(image_stem) + 1 :])


@register_layout
class CtOrgans(PairedFolderLayout):
    name = "sam_med2d_demo_ct"
    domain = "medical"
    summary = "SAM-Med2D demo CT: one sample per organ mask <image>_<organ>_<NNN>.png"
    folder_name = "sam_med2d_demo_ct"

    @classmethod
    def detect(cls, root: Path) -> bool:
        return super().detect(root) or ((root / "image2label_train.json").is_file() and cls.has_pairs(root))

    def list_entries(self, root: Path) -> tuple[list[Entry], list[Problem]]:
        images, masks = image_files(root / "images"), image_files(root / "masks")
        # Longest image stem first, so "s0114_111" never claims the masks of a longer stem sharing its prefix.
        stems = sorted(images, key=len, reverse=True)
        entries: list[Entry] = []
        claimed: set[str] = set()
        for mask_stem, mask_path in masks.items():
            image_stem = next((s for s in stems if mask_stem.startswith(s + "_")), None)
            if image_stem is None:
                continue
            claimed.add(mask_stem)
            organ = organ_of(mask_stem, image_stem)
            entries.append(
                Entry(mask_stem, images[image_stem], group=image_stem, info={"mask": mask_path, "organ": organ, "image_id": image_stem})
            )
        problems = [Problem(str(p), "mask without image: no image stem prefixes this file name") for s, p in masks.items() if s not in claimed]
        with_mask = {entry.group for entry in entries}
        problems += [Problem(str(p), "missing mask: no <image>_<organ>_NNN mask for this image") for s, p in images.items() if s not in with_mask]
        self._organs = tuple(sorted({entry.info["organ"] for entry in entries}))
        return entries, problems

    def dataset_classes(self, root: Path) -> tuple[str, ...]:
        return self._organs

    def read(self, entry: Entry) -> Sample:
        return read_binary_sample(entry, entry.info["organ"])
