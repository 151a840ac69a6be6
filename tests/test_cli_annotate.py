"""``segprompt everything``, ``refine`` and ``replay`` end to end through ``segprompt.cli.main``.

Classical backend on a crop of scikit-image's coins (offline, no weights) and a random-init tiny SAM saved as a
checkpoint file (so replay rebuilds it from the recorded options). COCO files are read back with pycocotools.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import skimage.data
import tifffile
import torch
from pycocotools.coco import COCO

from segprompt.backends.classical import ClassicalSegmenter
from segprompt.annotation_outputs import output_paths
from segprompt.backends.sam_arch import build_sam
from segprompt.cli import main
from segprompt.everything.classical import ClassicalEverything, classical_labels
from segprompt.export import ObjectInfo, read_coco, write_coco, write_objects_csv
from segprompt.io import read_image, write_image, write_mask
from segprompt.session_file import read_session_record

COINS = skimage.data.coins()[:120, :200]
OUTPUTS = ["coco.json", "labels.session.json", "labels.tif", "objects.csv", "overlay.png"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def coins_png(tmp_path):
    path = tmp_path / "coins.png"
    write_image(path, COINS)
    return path


def _csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_everything_writes_labels_coco_csv_overlay_and_a_session_that_replays(coins_png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["everything", str(coins_png), "--out", str(out), "--set", "h=4", "--class-name", "coin"]) == 0
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS  # nothing else: no temporaries
    err = capsys.readouterr().err
    assert "objects (classical, ClassicalEverything(" in err and "h=4.0" in err

    labels = tifffile.imread(out / "labels.tif")
    assert labels.dtype == np.uint16
    reference = classical_labels(COINS, ClassicalEverything(h=4.0))
    # The same objects as the generator, numbered best first.
    np.testing.assert_array_equal(labels > 0, reference > 0)
    assert len(np.unique(labels)) == len(np.unique(reference))
    for label in np.unique(labels)[1:]:
        assert len(np.unique(reference[labels == label])) == 1

    # COCO: pycocotools decodes every annotation to exactly its object; reading the file back gives the labels.
    coco = COCO(str(out / "coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["coin"]
    for annotation in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(coco.annToMask(annotation).astype(bool), labels == annotation["id"])
        assert annotation["iscrowd"] == 0 and annotation["backend"] == "classical"
    back, objects = read_coco(out / "coco.json")
    np.testing.assert_array_equal(back, labels)
    assert {o.class_name for o in objects} == {"coin"}

    rows = _csv_rows(out / "objects.csv")
    assert [int(r["id"]) for r in rows] == list(np.unique(labels)[1:])
    assert all(r["source"] == "everything" and r["model_id"] == ClassicalSegmenter().model_id and r["class"] == "coin" for r in rows)
    assert [int(r["area"]) for r in rows] == [int((labels == int(r["id"])).sum()) for r in rows]
    assert read_image(out / "overlay.png").shape == (120, 200, 3)

    record = read_session_record(out / "labels.session.json")
    assert record["image"]["path"] == "../coins.png" and [a["op"] for a in record["history"]] == ["everything"]

    again = tmp_path / "again"
    assert main(["replay", str(out / "labels.session.json"), "--out", str(again)]) == 0
    assert "labels identical to the saved session's" in capsys.readouterr().err
    assert (again / "labels.tif").read_bytes() == (out / "labels.tif").read_bytes()
    assert (again / "coco.json").read_bytes() == (out / "coco.json").read_bytes()


def test_everything_user_errors_are_one_line_before_any_work(coins_png, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for argv, message in (
        (["--set", "h"], "expected NAME=VALUE"),
        (["--set", "depth=2"], "unknown setting depth"),
        (["--set", "min_area=x"], "expected an integer"),
        (["--text", "coin"], "the 'classical' generator takes none"),
        (["--checkpoint", "sam.pth"], "--checkpoint is not used by the 'classical' backend"),
        (["--backend", "clipseg"],
         "backend 'clipseg' cannot segment everything; these can: classical, edgetam, sam, sam-hq, sam2, sam3, sam3-tracker"),
        (["--backend", "sam", "--set", "points_per_side=0"], "SamEverything.points_per_side must be an integer >= 1"),
        (["--backend", "sam", "--set", "h=4"], "segment everything with 'sam': unknown setting h; known: points_per_side"),
        (["--backend", "sam3"], "give its phrase"),
    ):
        out = tmp_path / "never"
        code = main(["everything", str(coins_png), "--out", str(out), *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
        assert not out.exists()
    assert main(["everything", str(coins_png), "--out", str(blocker)]) == 2
    assert "a_file" in capsys.readouterr().err
    assert main(["everything", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err


#: A random-init SAM's predicted IoUs are near 0: no IoU or stability filter, 2 x 2 points.
SAM_EVERYTHING = ["--set", "points_per_side=2", "--set", "pred_iou_thresh=0", "--set", "stability_score_thresh=0"]


def test_everything_with_sam_is_the_generators_answer_and_replays(coins_png, tmp_path, capsys):
    from segprompt.annotation import AnnotationSession
    from segprompt.backends.sam import SamSegmenter
    from segprompt.everything import everything_settings

    checkpoint = tmp_path / "tiny.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), checkpoint)
    out = tmp_path / "out"
    sam_flags = ["--backend", "sam", "--model-type", "tiny", "--checkpoint", str(checkpoint)]
    assert main(["everything", str(coins_png), "--out", str(out), *sam_flags, *SAM_EVERYTHING, "--set", "box_nms_thresh=0.9"]) == 0
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    assert "objects (sam, SamEverything(points_per_side=2, points_per_batch=64, pred_iou_thresh=0.0" in capsys.readouterr().err

    segmenter = SamSegmenter("tiny", checkpoint)
    settings = everything_settings("sam", points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.9)
    session = AnnotationSession(segmenter, segmenter.embed(COINS))
    found = session.everything(settings)
    labels = tifffile.imread(out / "labels.tif")
    assert found and len(np.unique(labels)) == len(found) + 1
    np.testing.assert_array_equal(labels, session.labels)
    rows = _csv_rows(out / "objects.csv")
    assert all(r["source"] == "everything" and r["model_id"].startswith("tiny:") for r in rows)

    record = read_session_record(out / "labels.session.json")
    assert record["history"][0]["settings"]["points_per_side"] == 2 and record["history"][0]["backend"] == "sam"
    assert main(["replay", str(out / "labels.session.json"), "--out", str(tmp_path / "again")]) == 0
    assert "labels identical to the saved session's" in capsys.readouterr().err


def test_everything_with_sam2_runs_through_its_batch_decoder(coins_png, tmp_path, capsys):
    from segprompt.testing import tiny_sam2_dir

    folder = tiny_sam2_dir(tmp_path / "sam2", seed=0)
    out = tmp_path / "out"
    code = main(["everything", str(coins_png), "--out", str(out), "--backend", "sam2", "--model-dir", str(folder),
                 *SAM_EVERYTHING, "--set", "exact=true"])
    assert code == 0
    assert "objects (sam2, SamEverything(" in capsys.readouterr().err
    assert tifffile.imread(out / "labels.tif").any()


@pytest.mark.parametrize("names_from", ["coco", "csv"])
def test_refine_keeps_every_id_and_class(coins_png, tmp_path, names_from, capsys):
    existing = np.zeros(COINS.shape, np.int32)
    existing[10:50, 10:55] = 4  # rough boxes around coins, as a quick annotator would paint them
    existing[60:110, 120:175] = 9
    existing[5:45, 150:195] = 12
    objects = [ObjectInfo(4, "penny"), ObjectInfo(9, "dime"), ObjectInfo(12, "penny")]
    if names_from == "coco":
        labels_file, extra = tmp_path / "mine.json", []
        write_coco(labels_file, existing, objects, "coins.png")
    else:
        labels_file = tmp_path / "mine.png"
        write_mask(labels_file, existing)
        write_objects_csv(tmp_path / "mine.csv", existing, objects)
        extra = ["--classes", str(tmp_path / "mine.csv")]
    out = tmp_path / "refined"
    assert main(["refine", str(labels_file), str(coins_png), "--out", str(out), "--ids", "4,9", *extra]) == 0
    assert "refined 2 of 3 objects (classical), ids and classes kept" in capsys.readouterr().err
    labels = tifffile.imread(out / "labels.tif")
    assert set(np.unique(labels)) == {0, 4, 9, 12}
    np.testing.assert_array_equal(labels == 12, existing == 12)  # not asked for: untouched
    assert (labels != existing).any()  # the rough boxes were refined
    rows = {int(r["id"]): r for r in _csv_rows(out / "objects.csv")}
    assert {k: (r["class"], r["source"]) for k, r in rows.items()} == {
        4: ("penny", "refine"), 9: ("dime", "refine"), 12: ("penny", "import")
    }
    assert rows[4]["prompts"] == "1" and rows[12]["prompts"] == "0"
    back, read = read_coco(out / "coco.json")
    np.testing.assert_array_equal(back, labels)
    assert {o.label: o.class_name for o in read} == {4: "penny", 9: "dime", 12: "penny"}
    # and the refine replays
    assert main(["replay", str(out / "labels.session.json"), "--out", str(tmp_path / "again")]) == 0
    assert "labels identical" in capsys.readouterr().err


def test_refine_errors(coins_png, tmp_path, capsys):
    write_mask(tmp_path / "small.png", np.ones((10, 10), np.uint8))
    write_mask(tmp_path / "fits.png", np.ones(COINS.shape, np.uint8))
    for argv, message in (
        (["small.png"], "labels of 10x10 (W x H) do not fit"),
        (["fits.png", "--ids", "2"], "holds no object 2"),
        (["fits.png", "--ids", "a"], "expected comma-separated object ids"),
        (["fits.png", "--classes", str(tmp_path / "fits.png")], "class names come from a COCO file (.json) or"),
    ):
        argv[0] = str(tmp_path / argv[0])
        assert main(["refine", argv[0], str(coins_png), "--out", str(tmp_path / "o"), *argv[1:]]) == 2
        assert message in capsys.readouterr().err, argv


def test_replay_with_a_sam_checkpoint_refuses_a_changed_image_or_model_by_name(coins_png, tmp_path, capsys):
    checkpoint, other = tmp_path / "tiny.pth", tmp_path / "other.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), checkpoint)
    torch.save(build_sam("tiny", seed=1).state_dict(), other)
    existing = np.zeros(COINS.shape, np.uint8)
    existing[10:50, 10:55], existing[60:110, 120:175] = 1, 2
    write_mask(tmp_path / "mine.png", existing)
    out = tmp_path / "sam"
    sam_flags = ["--backend", "sam", "--model-type", "tiny", "--checkpoint", str(checkpoint)]
    assert main(["refine", str(tmp_path / "mine.png"), str(coins_png), "--out", str(out), *sam_flags]) == 0
    record = read_session_record(out / "labels.session.json")
    assert record["backend"]["options"] == {"model_type": "tiny", "checkpoint": str(checkpoint.resolve())}
    assert record["backend"]["model_id"].startswith("tiny:")
    capsys.readouterr()

    session = str(out / "labels.session.json")
    assert main(["replay", session, "--out", str(tmp_path / "same")]) == 0
    assert "labels identical" in capsys.readouterr().err

    edited = COINS.copy()
    edited[0, 0] += 1
    write_image(tmp_path / "edited.png", edited)
    assert main(["replay", session, "--out", str(tmp_path / "x"), "--image", str(tmp_path / "edited.png")]) == 2
    assert f"image {tmp_path / 'edited.png'} changed: its pixels" in capsys.readouterr().err
    assert main(["replay", session, "--out", str(tmp_path / "x"), "--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"model changed: the session was made with sam model '{record['backend']['model_id']}', this is 'tiny:" in err
    assert not (tmp_path / "x").exists()

    # A session whose labels were saved differently: replay says so and exits 1.
    record["labels_sha256"] = "0" * 64
    (tmp_path / "tampered.session.json").write_text(json.dumps(record))
    (tmp_path / "labels.tif").write_bytes((out / "labels.tif").read_bytes())
    assert main(["replay", str(tmp_path / "tampered.session.json"), "--out", str(tmp_path / "t"),
                 "--image", str(coins_png)]) == 1
    assert "labels DIFFER from the saved session's, 0 pixels differ" in capsys.readouterr().err


def test_replay_errors(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"format": "segprompt-annotation", "schema": 9}))
    assert main(["replay", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "schema 9 was written by a newer segprompt" in capsys.readouterr().err
    path.write_text(json.dumps({"format": "segprompt-annotation", "schema": 2, "image": {"path": None, "sha256": "",
                                "hw": [1, 1]}, "backend": {"name": "classical", "model_id": "classical"}, "history": []}))
    assert main(["replay", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "names no image file (it was a napari layer); give --image" in capsys.readouterr().err


def test_output_paths_name_every_file():
    assert sorted(p.name for p in output_paths("d").values()) == OUTPUTS
    assert output_paths("d", ome_zarr=True)["ome-zarr"].name == "objects.ome.zarr"
