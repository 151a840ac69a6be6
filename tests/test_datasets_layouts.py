"""Layouts on small synthetic files written here: plain folder, VOC, ADE20K, COCO, PointPrompt, prompts.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segprompt.datasets import (
    BadFileError,
    Dataset,
    DatasetWarning,
    detect_layout,
    open_dataset,
    read_prompts_json,
    write_prompts_json,
)
from segprompt.datasets.ade20k import NUM_CLASSES
from segprompt.datasets.pointprompt import seismic_to_uint8
from segprompt.datasets.voc import VOC_CLASSES
from segprompt.errors import DatasetError
from segprompt.io import write_image, write_mask
from segprompt.prompts import Box, Points, Prompt

H, W = 12, 16


def _image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_palette_png(path, labels: np.ndarray) -> None:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(list(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8)))
    image.save(path)


# ---------------------------------------------------------------- plain folder


@pytest.fixture
def plain_folder(tmp_path):
    root = tmp_path / "plain"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    binary = np.zeros((H, W), np.uint8)
    binary[2:5, 3:9] = 255
    instances = np.zeros((H, W), np.uint16)
    instances[0:3, 0:3] = 1
    instances[6:10, 6:12] = 300
    for stem, mask in (("a_binary", binary), ("b_instances", instances)):
        write_image(root / "images" / f"{stem}.png", _image(len(stem)))
        write_mask(root / "masks" / f"{stem}.png", mask)
    return root


def test_plain_folder_binary_and_instance_masks(plain_folder):
    dataset = open_dataset(plain_folder)
    assert isinstance(dataset, Dataset)
    assert dataset.layout == "folder" and dataset.ids == ["a_binary", "b_instances"]
    binary, instances = dataset[0], dataset[1]
    assert binary.mask_kind == "binary" and binary.mask.dtype == np.uint8
    assert [int(o.mask.sum()) for o in binary.objects()] == [3 * 6]
    assert instances.mask_kind == "instance"
    assert sorted(int(o.mask.sum()) for o in instances.objects()) == [9, 24]
    assert binary.source.endswith("a_binary.png|" + str(plain_folder / "masks" / "a_binary.png"))


def test_plain_folder_with_classes_txt_is_semantic(tmp_path):
    root = tmp_path / "sem"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nroad\ncar\n")
    labels = np.zeros((H, W), np.uint8)
    labels[:4] = 1
    labels[8:, :5] = 2
    labels[5, 5] = 255
    write_image(root / "images" / "x.png", _image(1))
    write_mask(root / "masks" / "x.png", labels)
    sample = open_dataset(root)[0]
    assert sample.mask_kind == "semantic" and sample.class_names == ("background", "road", "car")
    assert sample.ignore is not None and int(sample.ignore.sum()) == 1
    assert {o.class_name: int(o.mask.sum()) for o in sample.objects()} == {"road": 4 * W, "car": 4 * 5}


def test_plain_folder_bad_label_value_is_a_problem(tmp_path):
    root = tmp_path / "sem"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nroad\n")
    write_image(root / "images" / "x.png", _image(1))
    write_mask(root / "masks" / "x.png", np.full((H, W), 7, np.uint8))
    dataset = open_dataset(root)
    with pytest.warns(DatasetWarning):
        assert list(dataset) == []
    assert len(dataset.problems) == 1 and "bad label values [7]" in dataset.problems[0].reason
    with pytest.raises(DatasetError, match="bad label values"):
        open_dataset(root, on_error="raise")[0]


# ---------------------------------------------------------------- PASCAL VOC


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for k, stem in enumerate(("2007_000001", "2007_000002", "2007_000003")):
        write_image(root / "JPEGImages" / f"{stem}.jpg", _image(k))
        labels = np.zeros((H, W), np.uint8)
        labels[2:6, 2:6] = VOC_CLASSES.index("person")
        labels[1, :] = 255  # void outline band
        labels[8:, 10:] = VOC_CLASSES.index("dog") if k else 0
        _write_palette_png(root / "SegmentationClass" / f"{stem}.png", labels)
    (root / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n2007_000002\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_000003\n")
    return root


def test_voc_palette_indices_ignore_and_splits(voc_root):
    assert detect_layout(voc_root) == "voc"
    dataset = open_dataset(voc_root)
    assert len(dataset.class_names) == 21 and dataset.class_names[15] == "person"
    assert dataset.split("train").ids == ["2007_000001", "2007_000002"]
    assert dataset.split("val").ids == ["2007_000003"]
    with pytest.raises(DatasetError, match="no split 'test'"):
        dataset.split("test")
    sample = dataset.get("2007_000002")
    assert sample.mask_kind == "semantic"
    assert int(sample.ignore.sum()) == W  # the 255 row
    objects = {o.class_name: int(o.mask.sum()) for o in sample.objects()}
    assert objects == {"person": 16, "dog": 4 * 6}  # background (index 0) is never an object


def test_voc_listed_id_without_files_is_a_problem(voc_root):
    (voc_root / "ImageSets/Segmentation/val.txt").write_text("2007_000003\n2007_000099\n")
    with pytest.warns(DatasetWarning, match="2007_000099"):
        dataset = open_dataset(voc_root)
    assert len(dataset) == 3 and len(dataset.problems) == 1


# ---------------------------------------------------------------- ADE20K


def test_ade20k_index_pngs_zero_is_other_and_ignored(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
    names = [f"thing{k};synonym" for k in range(1, NUM_CLASSES + 1)]
    lines = ["Idx,Ratio,Train,Val,Name"] + [f"{k},0.1,1,1,\"{name}\"" for k, name in enumerate(names, 1)]
    (root / "objectInfo150.csv").write_text("\n".join(lines))
    labels = np.zeros((H, W), np.uint8)
    labels[:3] = 1
    labels[5:7, :4] = 150
    write_image(root / "images/training/ADE_train_00000001.jpg", _image(0))
    write_mask(root / "annotations/training/ADE_train_00000001.png", labels)
    write_image(root / "images/validation/ADE_val_00000001.jpg", _image(1))
    write_mask(root / "annotations/validation/ADE_val_00000001.png", labels)
    dataset = open_dataset(root)
    assert dataset.layout == "ade20k"
    assert len(dataset.class_names) == NUM_CLASSES + 1
    assert dataset.class_names[0] == "other" and dataset.class_names[1] == "thing1" and dataset.class_names[150] == "thing150"
    assert dataset.split("val").ids == ["ADE_val_00000001"]
    sample = dataset.split("train")[0]
    np.testing.assert_array_equal(sample.ignore, labels == 0)
    assert {o.class_name: int(o.mask.sum()) for o in sample.objects()} == {"thing1": 3 * W, "thing150": 8}


# ---------------------------------------------------------------- COCO


@pytest.fixture
def coco_root(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    write_image(root / "val2017" / "000000000001.jpg", _image(0))
    write_image(root / "val2017" / "000000000002.png", _image(1))
    rle_mask = np.zeros((H, W), np.uint8, order="F")
    rle_mask[6:10, 10:15] = 1
    compressed = mask_utils.encode(np.asfortranarray(rle_mask))
    compressed["counts"] = compressed["counts"].decode("ascii")
    # Uncompressed RLE: column-major run lengths starting with a background run.
    column = np.zeros((H, W), np.uint8)
    column[:, 0] = 1
    uncompressed = {"size": [H, W], "counts": [0, H, H * W - H]}
    data = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "height": H, "width": W},
            {"id": 2, "file_name": "000000000002.png", "height": H, "width": W},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[2, 3, 8, 3, 8, 7, 2, 7]]},
            {"id": 11, "image_id": 1, "category_id": 18, "iscrowd": 0, "segmentation": compressed},
            {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": uncompressed},
        ],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    return root, rle_mask.astype(bool), column.astype(bool)


def test_coco_polygons_rle_and_crowd(coco_root):
    root, rle_mask, crowd = coco_root
    dataset = open_dataset(root)
    assert dataset.layout == "coco" and dataset.class_names == ("person", "dog")
    assert dataset.ids == ["000000000001", "000000000002"]
    sample = dataset[0]
    assert sample.mask_kind == "instance"
    objects = {o.class_name: o.mask for o in sample.objects()}
    # The polygon x 2..8, y 3..7 covers the pixels whose centres lie inside: 6 columns x 4 rows.
    assert int(objects["person"].sum()) == 24 and objects["person"][3:7, 2:8].all()
    np.testing.assert_array_equal(objects["dog"], rle_mask)
    np.testing.assert_array_equal(sample.ignore, crowd)
    assert sample.meta["annotation_ids"] == {1: 10, 2: 11}
    assert dataset[1].objects() == []


def test_coco_size_mismatch_and_missing_image(coco_root):
    root, _, _ = coco_root
    write_image(root / "val2017" / "000000000002.png", _image(1, H + 1, W))
    (root / "val2017" / "000000000001.jpg").unlink()
    with pytest.warns(DatasetWarning, match="missing image"):
        dataset = open_dataset(root / "annotations" / "instances_val2017.json")
    assert len(dataset) == 1
    with pytest.warns(DatasetWarning, match="size mismatch"):
        assert list(dataset) == []
    assert [p.reason.split(":")[0] for p in dataset.problems] == ["missing image listed in instances_val2017.json", "size mismatch"]


# ---------------------------------------------------------------- PointPrompt


def _object_array(items):
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


@pytest.fixture
def pointprompt_root(tmp_path):
    root = tmp_path / "pointprompt"
    dog = root / "Image datasets" / "Dog"
    seismic = root / "Image datasets" / "Salt dome"
    dog.mkdir(parents=True)
    seismic.mkdir(parents=True)
    labels = np.zeros((2, H, W), np.uint8)
    labels[:, 4:8, 5:10] = 1
    np.save(dog / "samples.npy", np.stack([_image(0), _image(1)]))
    np.save(dog / "labels.npy", labels)
    ramp = np.tile(np.linspace(-1.0, 1.0, W), (H, 1))
    np.save(seismic / "samples.npy", _object_array([ramp]), allow_pickle=True)
    np.save(seismic / "labels.npy", labels[:1])
    st1 = root / "Prompting Results" / "Dog" / "st1"
    for folder in ("points", "scores", "sorts", "eachround", "masks"):
        (st1 / folder).mkdir(parents=True)
    green = _object_array([np.array([[6.0, 5.0]]), np.array([[6.0, 5.0], [8.0, 6.0]]), np.zeros((0, 2))])
    red = _object_array([np.zeros((0, 2)), np.array([[1.0, 11.0]]), np.zeros((0, 2))])
    np.save(st1 / "points" / "1_green.npy", green, allow_pickle=True)
    np.save(st1 / "points" / "1_red.npy", red, allow_pickle=True)
    np.save(st1 / "scores" / "1score.npy", np.array([0.5, 0.8, 0.0]))
    np.save(st1 / "sorts" / "1_sort.npy", np.array([1, 0, 2]))
    np.save(st1 / "eachround" / "1_.npy", np.array([0, 0, 1]))
    for t in (0, 1, 2):
        write_mask(st1 / "masks" / f"1_{t}_mask.png", labels[0].astype(bool))
    return root


def test_pointprompt_release_layout(pointprompt_root):
    assert detect_layout(pointprompt_root) == "pointprompt"
    dataset = open_dataset(pointprompt_root)
    assert dataset.class_names == ("Dog", "Salt dome")
    assert dataset.ids == ["Dog/0", "Dog/1", "Salt dome/0"]
    assert dataset[0].prompts == {}  # no annotator prompted image 0
    sample = dataset.get("Dog/1")
    np.testing.assert_array_equal(sample.image, _image(1))
    assert sample.class_names == ("Dog",) and int(sample.mask.sum()) == 20
    steps = sample.prompts["st1"]
    assert len(steps) == 3
    assert steps[0].points == Points.from_lists([(6, 5)])
    assert steps[1].points == Points.from_lists([(6, 5), (8, 6)], [(1, 11)])
    assert steps[2].is_empty()  # kept so timestep indices match the scores
    for step in steps[:2]:
        step.validate_for(sample.image.shape[:2])  # (x, y) within the 16 x 12 image
    record = sample.meta["pointprompt"]["st1"]
    np.testing.assert_array_equal(record["scores"], [0.5, 0.8, 0.0])
    np.testing.assert_array_equal(record["sorts"], [1, 0, 2])
    assert [p.rsplit("/", 1)[1] for p in record["mask_paths"]] == ["1_0_mask.png", "1_1_mask.png", "1_2_mask.png"]


def test_pointprompt_seismic_mapping(pointprompt_root):
    sample = open_dataset(pointprompt_root).get("Salt dome/0")
    assert sample.image.shape == (H, W, 3)
    np.testing.assert_array_equal(seismic_to_uint8(np.array([-1.0, 0.0, 1.0])), [0, 127, 255])
    assert sample.image[0, 0, 0] == 0 and sample.image[0, -1, 0] == 255
    assert (sample.image[..., 0] == sample.image[..., 2]).all()


def test_pointprompt_label_count_mismatch_is_a_problem(pointprompt_root):
    np.save(pointprompt_root / "Image datasets" / "Dog" / "labels.npy", np.zeros((1, H, W), np.uint8))
    with pytest.warns(DatasetWarning, match="1 labels for 2 samples"):
        dataset = open_dataset(pointprompt_root)
    assert dataset.ids == ["Dog/0", "Salt dome/0"]


# ---------------------------------------------------------------- prompts.json


def test_prompts_json_round_trip_and_attachment(plain_folder):
    clicks = [
        Prompt(points=Points.from_lists([(4, 3)])),
        Prompt(points=Points.from_lists([(4, 3), (7, 4)], [(0, 0)])),
        Prompt(box=Box(3, 2, 9, 5)),
    ]
    write_prompts_json(plain_folder / "prompts.json", {"a_binary": {"alice": clicks}})
    assert read_prompts_json(plain_folder / "prompts.json") == {"a_binary": {"alice": clicks}}
    dataset = open_dataset(plain_folder)
    assert dataset.get("a_binary").prompts == {"alice": clicks}
    assert dataset.get("b_instances").prompts == {}
    assert dataset.split("train", fraction=0.5).problems == []


def test_prompts_json_errors(plain_folder):
    path = plain_folder / "prompts.json"
    write_prompts_json(path, {"nope": {"alice": [Prompt(points=Points.from_lists([(1, 1)]))]}})
    with pytest.warns(DatasetWarning, match="nope"):
        assert len(open_dataset(plain_folder).problems) == 1
    path.write_text(json.dumps({"schema": 1, "samples": {"a_binary": {"alice": [{"points": {"xy": [[1, 2]], "labels": [5]}}]}}}))
    with pytest.raises(DatasetError, match=r"samples\['a_binary'\]\['alice'\].*label must be 1"):
        open_dataset(plain_folder)
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read prompts JSON"):
        open_dataset(plain_folder)


def test_unknown_layout_and_bad_arguments(tmp_path, plain_folder):
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown layout 'nope'"):
        open_dataset(plain_folder, layout="nope")
    with pytest.raises(DatasetError, match="on_error"):
        open_dataset(plain_folder, on_error="ignore")
    with pytest.raises(DatasetError, match="no such dataset folder"):
        open_dataset(tmp_path / "absent")
    dataset = open_dataset(plain_folder)
    (plain_folder / "images" / "a_binary.png").write_bytes(b"garbage")  # broken after listing: found on access
    with pytest.warns(DatasetWarning, match="unreadable image"), pytest.raises(BadFileError, match="cannot decode"):
        dataset[0]
    assert dataset[1].id == "b_instances"
