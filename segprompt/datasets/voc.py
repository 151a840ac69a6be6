"""PASCAL VOC segmentation: ``JPEGImages/`` + ``SegmentationClass/`` palette PNGs.

``SegmentationClass/<id>.png`` is a palette PNG whose *indices* are the class
(0 = background, 1..20 = the VOC classes below), 255 = the "void" outline
band, which becomes ``Sample.ignore``. Samples are the ids listed in
``ImageSets/Segmentation/*.txt`` (each file is a split: ``train``, ``val``,
``trainval``); without those files, every annotated image. ``SegmentationObject``
(instance ids) is not read.
"""

from __future__ import annotations

from pathlib import Path

from .base import Problem, Sample
from .files import image_files
from .lazy import Entry, LazyDataset, OnError
from .plain import VOID_VALUE, read_semantic_sample
from .registry import Layout, register_layout

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
SPLIT_FOLDER = Path("ImageSets") / "Segmentation"


@register_layout
class Voc(Layout):
    name = "voc"
    domain = "common"
    background_is_class = True
    background_index = 0
    #: The reference's ``load_support_set(pixels_percentage=2)``: its class attribute of 10 % is never used.
    min_reference_area = 0.02
    summary = "PASCAL VOC: SegmentationClass palette PNGs (255 = ignore), ImageSets/Segmentation splits, 21 classes"
    specificity = 30

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir()

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        images, masks = image_files(root / "JPEGImages"), image_files(root / "SegmentationClass")
        splits = {path.stem: _read_ids(path) for path in sorted((root / SPLIT_FOLDER).glob("*.txt"))}
        listed = sorted({i for ids in splits.values() for i in ids}) if splits else sorted(masks)
        entries, problems = [], []
        for sample_id in listed:
            if sample_id not in images:
                problems.append(Problem(str(root / "JPEGImages" / f"{sample_id}.jpg"), "missing image listed in a split file"))
            elif sample_id not in masks:
                problems.append(Problem(str(images[sample_id]), "missing mask: no SegmentationClass PNG"))
            else:
                entries.append(Entry(sample_id, images[sample_id], info={"mask": masks[sample_id]}))
        return LazyDataset(root.name, self.name, VOC_CLASSES, entries, _read, on_error=on_error, problems=problems, splits=splits)


def _read_ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _read(entry: Entry) -> Sample:
    allowed = [*range(len(VOC_CLASSES)), VOID_VALUE]
    meta = {"background_index": Voc.background_index}
    return read_semantic_sample(entry, VOC_CLASSES, allowed, "VOC class-index", VOID_VALUE, meta)
