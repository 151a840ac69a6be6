"""Cityscapes fine annotations as 19 train ids (the layout Show-or-Tell reads).

``leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png``
images and ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png``
masks: train ids 0..18 are the classes below, 255 is ignore
(``Sample.ignore``). The ``labelTrainIds`` files are not in the download:
cityscapesscripts' ``createTrainIdLabelImgs`` writes them from the polygons.
There is no background class; every one of the 19 counts in the mIoU
(``background_is_class``). A sample's id is the file stem without
``_leftImg8bit`` (unique: it starts with the city). The split folders are
the splits ``train`` / ``val`` / ``test``.
"""

from __future__ import annotations

from pathlib import Path

from .base import Problem, Sample
from .lazy import Entry, LazyDataset, OnError
from .plain import VOID_VALUE, read_semantic_sample
from .registry import Layout, register_layout

#: cityscapesscripts' ``trainId2label`` names for train ids 0..18.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
SPLITS = ("train", "val", "test")
IMAGE_SUFFIX = "_leftImg8bit"
MASK_SUFFIX = "_gtFine_labelTrainIds"


@register_layout
class Cityscapes(Layout):
    name = "cityscapes"
    domain = "urban"
    background_is_class = True
    min_reference_area = 0.01
    summary = "Cityscapes: leftImg8bit/ + gtFine/ *_labelTrainIds.png, 19 classes, 255 = ignore, city folders per split"
    specificity = 30

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        entries: list[Entry] = []
        problems: list[Problem] = []
        splits: dict[str, list[str]] = {}
        for split in SPLITS:
            images = sorted((root / "leftImg8bit" / split).glob(f"*/*{IMAGE_SUFFIX}.png"))
            if not images:
                continue
            splits[split] = []
            for image in images:
                stem = image.name[: -len(f"{IMAGE_SUFFIX}.png")]
                mask = root / "gtFine" / split / image.parent.name / f"{stem}{MASK_SUFFIX}.png"
                if mask.is_file():
                    entries.append(Entry(stem, image, info={"mask": mask, "split": split}))
                    splits[split].append(stem)
                else:
                    problems.append(Problem(str(image), f"missing mask {mask.name} (cityscapesscripts' "
                                                         "createTrainIdLabelImgs writes the labelTrainIds files)"))
        return LazyDataset(root.name, self.name, CITYSCAPES_CLASSES, entries, _read, on_error=on_error,
                           problems=problems, splits=splits)


def _read(entry: Entry) -> Sample:
    allowed = [*range(len(CITYSCAPES_CLASSES)), VOID_VALUE]
    return read_semantic_sample(entry, CITYSCAPES_CLASSES, allowed, "Cityscapes train-id", VOID_VALUE,
                                {"split": entry.info["split"]})
