"""The datasets layer on the real shared data, splits, broken files, and the inspect verb."""

from __future__ import annotations

import argparse
import csv
import json
import shutil

import numpy as np
import pytest

from segprompt.cli import datasets as datasets_cli
from segprompt.datasets import BadFileError, DatasetWarning, open_dataset
from segprompt.datasets.scribbles import farthest_point_subsample, scribble_points
from segprompt.datasets.summary import summarize, write_contact_sheet
from segprompt.errors import DatasetError
from segprompt.io import read_image, read_mask, write_image

# (folder, samples, classes, layout-specific mask kind) from ../shared/data/README.md
SHARED = [
    ("kvasir_seg", 70, 1, "binary"),
    ("busi", 60, 1, "binary"),
    ("skin_lesion_isic_ham", 14, 1, "binary"),
    ("sam_med2d_demo_ct", 30, 24, "binary"),
    ("dsb2018_nuclei", 48, 1, "instance"),
    ("isbi2012_em_membranes", 30, 1, "instance"),
    ("camvid", 27, 11, "semantic"),
    ("coco_mval", 50, 80, "binary"),
    ("grabcut_scribbles", 50, 1, "binary"),
]


# The one known problem of the shared data (a CT slice without masks) would warn in every test.
pytestmark = pytest.mark.filterwarnings("ignore::segprompt.datasets.lazy.DatasetWarning")


@pytest.mark.parametrize("folder, count, classes, kind", SHARED, ids=[s[0] for s in SHARED])
def test_shared_folder_loads_with_readme_counts(shared_data, tmp_path, folder, count, classes, kind):
    dataset = open_dataset(shared_data(folder))
    assert dataset.layout == folder
    assert len(dataset) == count
    assert len(dataset.class_names) == classes
    sample = dataset[0]
    assert sample.mask_kind == kind
    assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
    assert sample.mask.shape == sample.image.shape[:2]
    assert all(o.class_name in dataset.class_names for o in sample.objects())
    preview = tmp_path / f"{folder}.png"
    assert write_contact_sheet(preview, dataset, max_samples=2) == 2
    sheet = read_image(preview)
    assert sheet.shape[1] == 2 * 192 and sheet.std() > 0


def test_only_the_known_missing_ct_mask_is_a_problem(shared_data):
    for folder, *_ in SHARED:
        problems = open_dataset(shared_data(folder)).problems
        if folder == "sam_med2d_demo_ct":
            assert [p.path.rsplit("/", 1)[1] for p in problems] == ["amos_0507_31.png"]
        else:
            assert problems == []


def test_ct_organs_one_sample_per_organ_mask(shared_data):
    dataset = open_dataset(shared_data("sam_med2d_demo_ct"))
    groups = {entry.group for entry in dataset.entries}
    assert groups == {"amos_0004_75", "amos_0006_90", "s0114_111", "s0619_32"}
    sample = dataset.get("amos_0004_75_inferior_vena_cava_000")
    assert sample.class_names == ("inferior_vena_cava",)
    assert sample.meta["image_id"] == "amos_0004_75"
    hips = [i for i in dataset.ids if "_hip_left_" in i]
    assert hips == ["s0619_32_hip_left_000", "s0619_32_hip_left_001"]
    # A split never separates the organs of one slice.
    train, test = dataset.split("train", fraction=0.5), dataset.split("test", fraction=0.5)
    assert not {e.group for e in train.entries} & {e.group for e in test.entries}
    assert len(train) + len(test) == 30


def test_nuclei_instances_match_index_csv(shared_data):
    root = shared_data("dsb2018_nuclei")
    with (root / "index.csv").open() as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    dataset = open_dataset(root)
    for index in (0, 1, 2):
        sample = dataset[index]
        assert len(sample.objects()) == int(rows[sample.id]["n_instances"])
        assert sample.meta["image_type"] == rows[sample.id]["image_type"]
        assert all(o.class_name == "nucleus" for o in sample.objects())


def test_busi_diagnosis_and_empty_normal_masks(shared_data):
    dataset = open_dataset(shared_data("busi"))
    diagnoses = [dataset.entries[i].info["diagnosis"] for i in range(len(dataset))]
    assert {d: diagnoses.count(d) for d in set(diagnoses)} == {"benign": 25, "malignant": 25, "normal": 10}
    normal = dataset.get(next(i for i in dataset.ids if i.startswith("normal")))
    assert normal.meta["diagnosis"] == "normal" and normal.objects() == []


def test_isbi_cells_are_connected_components(shared_data):
    root = shared_data("isbi2012_em_membranes")
    sample = open_dataset(root)[0]
    raw = read_mask(root / "masks" / "00.png")
    np.testing.assert_array_equal(sample.mask > 0, raw == 255)
    from scipy import ndimage

    _, expected = ndimage.label(raw == 255)  # default structure = 4-connectivity
    assert len(sample.objects()) == expected


def test_camvid_unlabelled_is_ignore(shared_data):
    root = shared_data("camvid")
    sample = open_dataset(root)[0]
    raw = read_mask(root / "masks" / f"{sample.id}.png")
    np.testing.assert_array_equal(sample.ignore, raw == 11)
    assert "Sky" in {o.class_name for o in sample.objects()}  # class 0 is a real class here


def test_coco_mval_class_per_mask(shared_data):
    root = shared_data("coco_mval")
    index = {row["name"]: row["class_name"] for row in json.loads((root / "index.json").read_text())}
    dataset = open_dataset(root)
    sample = dataset[3]
    assert sample.class_names == (index[sample.id],)
    assert [o.class_name for o in sample.objects()] == [index[sample.id]]


def test_grabcut_scribbles_become_points_inside_and_outside(shared_data):
    root = shared_data("grabcut_scribbles")
    dataset = open_dataset(root)
    sample = dataset[0]
    assert set(sample.prompts) == {"set1", "set2"}
    gt = read_mask(root / "masks" / f"{sample.id}.png")
    np.testing.assert_array_equal(sample.ignore, gt == 128)
    for set_name in ("set1", "set2"):
        (prompt,) = sample.prompts[set_name]
        points = prompt.points
        scribble = sample.meta["scribbles"][set_name]
        x, y = points.xy[:, 0].astype(int), points.xy[:, 1].astype(int)
        np.testing.assert_array_equal(scribble[y, x], np.where(points.labels == 1, 1, 2))  # (x, y) = (col, row)
        assert 0 < (points.labels == 1).sum() <= 24 and 0 < (points.labels == 0).sum() <= 24
    # set-1 foreground strokes lie inside the object, background strokes outside (SOURCE.txt).
    fg = sample.prompts["set1"][0].points
    assert (gt[fg.include[:, 1].astype(int), fg.include[:, 0].astype(int)] == 255).all()
    assert (gt[fg.exclude[:, 1].astype(int), fg.exclude[:, 0].astype(int)] == 0).all()
    assert all(set(s.prompts) == {"set1", "set2"} for s in (dataset[k] for k in range(0, 50, 10)))


def test_farthest_point_subsample_by_hand():
    line = np.array([[x, 0] for x in range(11)])
    # Nearest the centroid (5, 0) first, then the farthest from it (0, first of the tie), then (10, 0).
    np.testing.assert_array_equal(farthest_point_subsample(line, 3), [[5, 0], [0, 0], [10, 0]])
    np.testing.assert_array_equal(farthest_point_subsample(line[:2], 5), line[:2])
    scribble = np.zeros((5, 6), np.uint8)
    scribble[1, 1:4] = 1
    scribble[4, 5] = 2
    points = scribble_points(scribble, max_points_per_label=2)
    np.testing.assert_array_equal(points.xy, [[2, 1], [1, 1], [5, 4]])
    np.testing.assert_array_equal(points.labels, [1, 1, 0])
    assert scribble_points(np.zeros((3, 3), np.uint8)) is None


def test_seeded_split_is_deterministic_and_disjoint(shared_data):
    dataset = open_dataset(shared_data("kvasir_seg"))
    train = dataset.split("train", fraction=0.8, seed=0)
    val, test = dataset.split("val", seed=0), dataset.split("test", seed=0)
    assert len(train) == 56 and len(val) == 14
    assert val.ids == test.ids  # one held-out part under either name
    assert set(train.ids) | set(val.ids) == set(dataset.ids) and not set(train.ids) & set(val.ids)
    assert dataset.split("train", seed=0).ids == train.ids
    assert dataset.split("train", seed=1).ids != train.ids
    assert dataset.split("all") is dataset
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        dataset.split("dev")
    with pytest.raises(DatasetError, match="fraction"):
        dataset.split("train", fraction=1.0)


@pytest.fixture
def broken_copy(shared_data, tmp_path):
    """Six kvasir pairs, three of them broken: missing mask, size mismatch, unreadable image."""
    source = shared_data("kvasir_seg")
    root = tmp_path / "kvasir_seg"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stems = sorted(p.stem for p in (source / "images").iterdir())[:6]
    for stem in stems:
        shutil.copy(source / "images" / f"{stem}.jpg", root / "images")
        shutil.copy(source / "masks" / f"{stem}.png", root / "masks")
    (root / "masks" / f"{stems[0]}.png").unlink()
    write_image(root / "masks" / f"{stems[1]}.png", np.zeros((10, 10), np.uint8))
    (root / "images" / f"{stems[2]}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root, stems


def test_broken_files_are_reported_once_and_the_rest_loads(broken_copy):
    root, stems = broken_copy
    with pytest.warns(DatasetWarning) as caught:
        dataset = open_dataset(root)
        samples = list(dataset)
        list(dataset)  # a second pass reports nothing new
    assert [s.id for s in samples] == stems[3:]
    lines = [str(p) for p in dataset.problems]
    assert len(lines) == 3 and len(caught) == 3
    assert lines[0].startswith(str(root / "images" / f"{stems[0]}.jpg")) and "missing mask" in lines[0]
    assert lines[1].startswith(str(root / "masks" / f"{stems[1]}.png")) and "size mismatch" in lines[1]
    assert lines[2].startswith(str(root / "images" / f"{stems[2]}.jpg")) and "unreadable image" in lines[2]
    with pytest.raises(BadFileError, match="size mismatch"):
        dataset[0]


def test_on_error_raise(broken_copy):
    root, stems = broken_copy
    with pytest.raises(DatasetError, match="missing mask"):
        open_dataset(root, on_error="raise")
    (root / "images" / f"{stems[0]}.jpg").unlink()
    dataset = open_dataset(root, on_error="raise")
    with pytest.raises(DatasetError, match="size mismatch"):
        list(dataset)


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    datasets_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_inspect_prints_report_and_writes_preview(broken_copy, tmp_path, capsys):
    root, stems = broken_copy
    preview = tmp_path / "sheet.png"
    assert _run_cli(["datasets", "inspect", str(root), "--max", "4", "--preview", str(preview)]) == 0
    out = capsys.readouterr().out
    assert "layout  : kvasir_seg" in out
    assert "samples : 5 (read 2)" in out  # of the first 4 samples, 2 are broken
    assert "objects : 2" in out and "classes : 1: polyp" in out
    assert "problems : 3" in out and "size mismatch" in out
    assert read_image(preview).shape == (192 + 14, 3 * 192, 3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sheet")]  # no temporary left


def test_inspect_statistics_by_hand(shared_data):
    summary = summarize(open_dataset(shared_data("grabcut_scribbles")), max_samples=2)
    for k in range(2):
        sample = open_dataset(shared_data("grabcut_scribbles"))[k]
        valid = ~sample.ignore
        assert summary.foreground_fractions[k] == pytest.approx((sample.mask.astype(bool) & valid).sum() / valid.sum())
        assert summary.ignored_fractions[k] == pytest.approx(sample.ignore.mean())
    assert summary.object_counts == [1, 1] and summary.prompt_sets == {"set1": 2, "set2": 2}


def test_inspect_reports_ignored_pixels_and_rounds_its_means(shared_data):
    # CamVid: every labelled pixel is some class (foreground 1.000 of the rest), the Unlabelled pixels are ignored.
    dataset = open_dataset(shared_data("camvid"))
    summary = summarize(dataset, max_samples=3)
    expected = np.mean([dataset[k].ignore.mean() for k in range(3)])
    report = summary.format()
    assert f"ignored pixels    : {100 * expected:.1f} %" in report
    assert "(of the pixels not ignored)" in report
    objects_line = next(line for line in report.splitlines() if line.startswith("objects per image"))
    mean = objects_line.split("mean ")[1].split()[0]
    assert mean == f"{np.mean(summary.object_counts):.1f}" or mean == f"{np.mean(summary.object_counts):.0f}"


def test_inspect_layouts_lists_every_layout(capsys):
    assert _run_cli(["datasets", "layouts"]) == 0
    out = capsys.readouterr().out
    for name in ("folder", "voc", "ade20k", "coco", "pointprompt", "grabcut_scribbles", "camvid"):
        assert name in out


def test_inspect_unknown_folder_is_a_dataset_error(tmp_path):
    # The CLI dispatcher turns a SegpromptError into one line on stderr and exit code 2.
    with pytest.raises(DatasetError, match="no such dataset folder"):
        _run_cli(["datasets", "inspect", str(tmp_path / "absent")])
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        _run_cli(["datasets", "inspect", str(tmp_path)])
