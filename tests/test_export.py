"""Exports: COCO RLE round trip checked with pycocotools' own decoder, label TIFF / PNG, objects.csv, OME-Zarr (NGFF 0.5)."""

import csv
import json

import numpy as np
import pytest
import tifffile
import zarr
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from segprompt.errors import DatasetError, ImageError
from segprompt.export import (
    CSV_FIELDS,
    NGFF_VERSION,
    ObjectInfo,
    read_class_names,
    read_coco,
    read_labels,
    read_objects_csv,
    read_ome_zarr_labels,
    write_coco,
    write_label_png,
    write_label_tiff,
    write_objects_csv,
    write_ome_zarr,
)
from segprompt.io import read_mask
from segprompt.prompts import Box

H, W = 45, 70  # non-square: a row/column swap cannot pass


def _labels():
    """Objects 3, 7 and 300 (beyond uint8), with a hole, touching the image border, one pixel."""
    labels = np.zeros((H, W), np.int32)
    labels[2:12, 3:25] = 3
    labels[5:8, 10:14] = 0  # a hole
    labels[20:45, 40:70] = 7  # touches the bottom-right corner
    labels[30, 5] = 300
    return labels


OBJECTS = [ObjectInfo(3, "cell", 0.91, "sam", "vit_b:0123"), ObjectInfo(7, "nucleus", float("nan"), "classical"),
           ObjectInfo(300, "cell")]


def test_coco_round_trip_matches_pycocotools_decode(tmp_path):
    labels = _labels()
    path = tmp_path / "objects.coco.json"
    write_coco(path, labels, OBJECTS, "cells.png")
    record = json.loads(path.read_text())
    assert record["categories"] == [
        {"id": 1, "name": "cell", "supercategory": ""},
        {"id": 2, "name": "nucleus", "supercategory": ""},
    ]
    assert record["images"] == [{"id": 1, "file_name": "cells.png", "height": H, "width": W}]
    by_id = {a["id"]: a for a in record["annotations"]}
    assert sorted(by_id) == [3, 7, 300] and all(a["iscrowd"] == 0 for a in by_id.values())
    assert by_id[3]["score"] == pytest.approx(0.91) and "score" not in by_id[7]
    assert by_id[7]["category_id"] == 2 and by_id[300]["category_id"] == 1
    for label, annotation in by_id.items():
        # pycocotools' own decoding of what we wrote is exactly the object
        rle = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), labels == label)
        assert annotation["area"] == int((labels == label).sum())
        x0, y0, x1, y1 = Box.from_mask(labels == label).as_array()
        assert annotation["bbox"] == [x0, y0, x1 - x0, y1 - y0]
    # pycocotools' COCO API reads the file and its annToMask agrees
    coco = COCO(str(path))
    np.testing.assert_array_equal(coco.annToMask(coco.anns[7]).astype(bool), labels == 7)

    back, objects = read_coco(path)
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.int32
    assert [(o.label, o.class_name, o.backend) for o in objects] == [(3, "cell", "sam"), (7, "nucleus", "classical"), (300, "cell", "")]
    assert [o.model_id for o in objects] == ["vit_b:0123", "", ""]
    assert objects[0].score == pytest.approx(0.91) and np.isnan(objects[1].score)


def test_read_coco_decodes_polygons_and_uncompressed_rle_and_picks_the_image(tmp_path):
    square = np.zeros((H, W), np.uint8)
    square[10:20, 30:40] = 1
    uncompressed = {"size": [H, W], "counts": []}
    flat = square.ravel(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    uncompressed["counts"] = np.diff(np.concatenate([[0], changes])).tolist()
    polygon = [[2.0, 2.0, 12.0, 2.0, 12.0, 8.0, 2.0, 8.0]]
    record = {
        "images": [{"id": 5, "file_name": "a.png", "height": H, "width": W}, {"id": 6, "file_name": "b.png", "height": H, "width": W}],
        "categories": [{"id": 9, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 9, "segmentation": uncompressed, "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 9, "segmentation": polygon, "iscrowd": 0},
            {"id": 3, "image_id": 6, "category_id": 9, "segmentation": polygon, "iscrowd": 0},
        ],
    }
    path = tmp_path / "foreign.json"
    path.write_text(json.dumps(record))
    with pytest.raises(DatasetError, match="expected one image, found 2"):
        read_coco(path)
    labels, objects = read_coco(path, image="a.png")
    np.testing.assert_array_equal(labels == 1, square.astype(bool))
    expected_polygon = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, H, W))).astype(bool)
    np.testing.assert_array_equal(labels == 2, expected_polygon & ~square.astype(bool))
    assert [o.class_name for o in objects] == ["thing", "thing"]
    assert read_coco(path, image=6)[0].max() == 3


def test_read_coco_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{oops")
    with pytest.raises(DatasetError, match="invalid JSON"):
        read_coco(path)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="not a COCO file"):
        read_coco(path)
    with pytest.raises(DatasetError, match="cannot read"):
        read_coco(tmp_path / "missing.json")
    image = {"id": 1, "file_name": "a.png", "height": 4, "width": 4}
    bad_counts = {"size": [4, 4], "counts": "!!not rle"}
    for annotations, message in (
        ([{"id": 0, "image_id": 1, "category_id": 1, "segmentation": []}], "ids must be distinct integers >= 1"),
        ([{"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [5, 4], "counts": "0"}}], r"size \[5, 4\] differs"),
        ([{"id": 1, "image_id": 1, "category_id": 1, "segmentation": bad_counts}], r"annotations\[0\] \(id 1\)"),
        ([{"id": 1, "image_id": 1, "category_id": 2, "segmentation": [[0, 0, 2, 0, 2, 2]]}], "category_id 2 is not in"),
    ):
        path.write_text(json.dumps({"images": [image], "categories": [{"id": 1, "name": "a"}], "annotations": annotations}))
        with pytest.raises(DatasetError, match=message):
            read_coco(path)


def test_label_tiff_is_uint16_or_uint32_and_png_round_trips(tmp_path):
    labels = _labels()
    write_label_tiff(tmp_path / "small.tif", labels)
    small = tifffile.imread(tmp_path / "small.tif")
    assert small.dtype == np.uint16
    np.testing.assert_array_equal(small, labels)
    large = labels.copy()
    large[0, 0] = 70_000
    write_label_tiff(tmp_path / "large.tif", large)
    assert tifffile.imread(tmp_path / "large.tif").dtype == np.uint32
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "large.tif"), large)
    write_label_png(tmp_path / "labels.png", labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "labels.png"), labels)
    with pytest.raises(ImageError, match="need a .tif"):
        write_label_png(tmp_path / "large.png", large)
    with pytest.raises(ImageError, match="integer label map"):
        write_label_tiff(tmp_path / "float.tif", labels.astype(float))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.png", "large.tif", "small.tif"]  # no temporaries


def test_objects_csv_rows(tmp_path):
    labels = _labels()
    write_objects_csv(tmp_path / "objects.csv", labels, OBJECTS[:2])  # 300 has no record: a default one
    with open(tmp_path / "objects.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_FIELDS
    assert [r["id"] for r in rows] == ["3", "7", "300"]
    assert [r["class"] for r in rows] == ["cell", "nucleus", "object"]
    assert rows[0]["score"] == "0.91" and rows[1]["score"] == ""
    for row in rows:
        mask = labels == int(row["id"])
        assert int(row["area"]) == mask.sum()
        assert [float(row[k]) for k in ("x0", "y0", "x1", "y1")] == Box.from_mask(mask).as_array().tolist()
    assert rows[1]["x1"] == str(W) and rows[1]["y1"] == str(H)  # exclusive ends at the border


def _attrs(path):
    return json.loads(path.read_text())["attributes"]["ome"]


def test_ome_zarr_follows_ngff_05_and_reads_back(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (1100, 600, 3), dtype=np.uint8)
    labels = np.zeros((1100, 600), np.int32)
    labels[100:400, 50:300] = 3
    labels[800:1100, 500:600] = 70_000
    objects = [ObjectInfo(3, "cell", 0.5, "sam"), ObjectInfo(70_000, "nucleus")]
    root = tmp_path / "out.ome.zarr"
    write_ome_zarr(root, image, labels, objects)

    # The MUSTs of NGFF 0.5 (https://ngff.openmicroscopy.org/0.5/): "ome" namespace with "version" in every
    # zarr.json; multiscales with axes (unique names, 2-3 of type space, channel before space) and datasets
    # ordered largest first, each with exactly one scale of len(axes); arrays with matching dimension_names;
    # a "labels" group listing the label images; integer label arrays with "image-label".
    image_meta = _attrs(root / "zarr.json")
    assert image_meta["version"] == NGFF_VERSION
    (multiscale,) = image_meta["multiscales"]
    names = [axis["name"] for axis in multiscale["axes"]]
    assert names == ["c", "y", "x"] and [a["type"] for a in multiscale["axes"]] == ["channel", "space", "space"]
    levels = [d["path"] for d in multiscale["datasets"]]
    assert levels == ["0", "1", "2"]  # 1100 -> 550 -> 275 (<= 512)
    shapes = []
    for dataset, factor in zip(multiscale["datasets"], (1, 2, 4)):
        (transform,) = dataset["coordinateTransformations"]
        assert transform == {"type": "scale", "scale": [1.0, factor, factor]}
        array_meta = json.loads((root / dataset["path"] / "zarr.json").read_text())
        assert array_meta["dimension_names"] == names and array_meta["node_type"] == "array"
        shapes.append(tuple(array_meta["shape"]))
    assert shapes == [(3, 1100, 600), (3, 550, 300), (3, 275, 150)]
    assert _attrs(root / "labels" / "zarr.json") == {"version": NGFF_VERSION, "labels": ["objects"]}
    label_meta = _attrs(root / "labels" / "objects" / "zarr.json")
    assert label_meta["version"] == NGFF_VERSION
    assert label_meta["image-label"]["source"] == {"image": "../../"}
    assert [c["label-value"] for c in label_meta["image-label"]["colors"]] == [3, 70_000]
    assert all(len(c["rgba"]) == 4 and all(0 <= v <= 255 for v in c["rgba"]) for c in label_meta["image-label"]["colors"])
    assert label_meta["multiscales"][0]["axes"] == multiscale["axes"]

    group = zarr.open_group(str(root), mode="r")
    np.testing.assert_array_equal(np.moveaxis(group["0"][...], 0, -1), image)
    level0 = group["labels/objects/0"]
    assert level0.dtype == np.uint32 and level0.shape == (1, 1100, 600)
    np.testing.assert_array_equal(group["labels/objects/1"][0], labels[::2, ::2])
    back, infos = read_ome_zarr_labels(root)
    np.testing.assert_array_equal(back, labels)
    assert [(o.label, o.class_name, o.backend) for o in infos] == [(3, "cell", "sam"), (70_000, "nucleus", "")]


def test_ome_zarr_replaces_a_store_atomically_and_keeps_it_on_failure(tmp_path):
    root = tmp_path / "out.ome.zarr"
    image = np.zeros((20, 30, 3), np.uint8)
    first = np.zeros((20, 30), np.int32)
    first[:5, :5] = 1
    write_ome_zarr(root, image, first, [])
    second = np.zeros((20, 30), np.int32)
    second[10:, 10:] = 2
    write_ome_zarr(root, image, second, [])
    np.testing.assert_array_equal(read_ome_zarr_labels(root)[0], second)
    with pytest.raises(ImageError, match="does not match the image"):
        write_ome_zarr(root, image, second[:10], [])
    np.testing.assert_array_equal(read_ome_zarr_labels(root)[0], second)
    assert [p.name for p in tmp_path.iterdir()] == ["out.ome.zarr"]  # no temporary or old folder left
    with pytest.raises(DatasetError, match="no OME-Zarr label image"):
        read_ome_zarr_labels(tmp_path / "nothing.zarr")


def test_objects_csv_reads_back_and_names_the_classes_of_a_label_image(tmp_path):
    labels = _labels()
    write_objects_csv(tmp_path / "objects.csv", labels, OBJECTS)
    back = read_objects_csv(tmp_path / "objects.csv")
    assert [(o.label, o.class_name, o.backend, o.model_id) for o in back] == [
        (3, "cell", "sam", "vit_b:0123"), (7, "nucleus", "classical", ""), (300, "cell", "", "")
    ]
    assert back[0].score == pytest.approx(0.91) and np.isnan(back[1].score)
    assert read_class_names(tmp_path / "objects.csv") == {3: "cell", 7: "nucleus", 300: "cell"}
    (tmp_path / "other.csv").write_text("id,class\n5,dog\n")  # another tool's table: id and class suffice
    assert read_class_names(tmp_path / "other.csv") == {5: "dog"}
    for text, message in (
        ("label,class\n1,a\n", "no 'id' column"),
        ("id,class\n1,a\n1,b\n", "id 1 appears twice"),
        ("id,score\n1,high\n", "line 2: bad id or score"),
        ("id\n0\n", "line 2: id must be >= 1"),
    ):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(DatasetError, match=message):
            read_objects_csv(tmp_path / "bad.csv")
    with pytest.raises(DatasetError, match=r"COCO file \(.json\) or an objects table"):
        read_class_names(tmp_path / "labels.png")


def test_read_labels_opens_label_images_coco_and_ome_zarr(tmp_path):
    labels = _labels()
    write_label_tiff(tmp_path / "l.tif", labels)
    write_coco(tmp_path / "l.json", labels, OBJECTS, "cells.png")
    write_ome_zarr(tmp_path / "l.ome.zarr", np.zeros((H, W, 3), np.uint8), labels, OBJECTS)
    for name, classes in (("l.tif", {}), ("l.json", {3: "cell", 7: "nucleus", 300: "cell"}),
                          ("l.ome.zarr", {3: "cell", 7: "nucleus", 300: "cell"})):
        back, objects = read_labels(tmp_path / name)
        np.testing.assert_array_equal(back, labels)
        assert {o.label: o.class_name for o in objects} == classes, name
    np.save(tmp_path / "f.npy", labels.astype(np.float32))
    with pytest.raises(ImageError, match="a label image holds integer ids"):
        read_labels(tmp_path / "f.npy")
