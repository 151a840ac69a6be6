"""GrabCut with human scribbles (Andrade & Carrera 2015 sets).

* ``masks/``: 255 = object, 0 = background, 128 = unlabelled boundary band,
  which becomes ``Sample.ignore``;
* ``scribbles_set1/``, ``scribbles_set2/``: stroke maps (0 none, 1 foreground,
  2 background). Each becomes a one-timestep prompt set
  ``Sample.prompts["set1"]``/``["set2"]`` of subsampled points (see
  :mod:`segprompt.datasets.scribbles`); the raw maps are kept in
  ``Sample.meta["scribbles"]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..prompts import Prompt
from .base import Problem, Sample
from .files import check_values, load_image, load_mask
from .lazy import BadFileError, Entry
from .plain import PairedFolderLayout, meta_of, source_of
from .registry import register_layout
from .scribbles import scribble_points

SCRIBBLE_SETS = {"set1": "scribbles_set1", "set2": "scribbles_set2"}
IGNORE_VALUE = 128


@register_layout
class GrabCutScribbles(PairedFolderLayout):
    name = "grabcut_scribbles"
    domain = "common"
    summary = "GrabCut: binary masks with a 128 ignore band; two human scribble sets as point prompts"
    folder_name = "grabcut_scribbles"
    class_names = ("object",)
    index_file = "index.json"
    index_fields = {"flandrade_gt_agreement_on_known_pixels": "scribble_gt_agreement"}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return super().detect(root) or (cls.has_pairs(root) and (root / SCRIBBLE_SETS["set1"]).is_dir())

    def list_entries(self, root: Path) -> tuple[list[Entry], list[Problem]]:
        entries, problems = super().list_entries(root)
        scribble_paths = {name: root / folder for name, folder in SCRIBBLE_SETS.items()}
        return [
            Entry(e.id, e.path, e.group, {**e.info, "scribbles": {n: f / e.info["mask"].name for n, f in scribble_paths.items()}})
            for e in entries
        ], problems

    def read(self, entry: Entry) -> Sample:
        image = load_image(entry.path)
        mask_path = entry.info["mask"]
        raw = load_mask(mask_path, image.shape)
        check_values(raw, mask_path, (0, IGNORE_VALUE, 255), "GrabCut")
        prompts: dict[str, list[Prompt]] = {}
        scribbles: dict[str, np.ndarray] = {}
        for set_name, path in entry.info["scribbles"].items():
            if not path.is_file():
                raise BadFileError(path, f"missing scribble map of {set_name}")
            scribble = load_mask(path, image.shape)
            check_values(scribble, path, (0, 1, 2), "scribble")
            scribbles[set_name] = scribble
            points = scribble_points(scribble)
            if points is not None:
                prompts[set_name] = [Prompt(points=points)]
        return Sample(
            entry.id,
            image,
            (raw == 255).astype(np.uint8),
            "binary",
            self.class_names,
            ignore=raw == IGNORE_VALUE,
            prompts=prompts,
            source=source_of(entry),
            meta={**meta_of(entry), "scribbles": scribbles},  # replaces the paths with the maps
        )
