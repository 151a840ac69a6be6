"""``segprompt segment-volume`` end to end: files in, label volumes out, one-line errors before any work."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import tifffile

from segprompt.cli import main
from segprompt.metrics import iou
from segprompt.prompts import Box
from segprompt.volume.reader import open_volume
from segprompt.volume.synthetic import ellipsoid_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (30, 80, 96)
MIDDLE = 15


@pytest.fixture(scope="module")
def ellipsoid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("volume")
    volume, truth, _ = ellipsoid_volume(SHAPE)
    tifffile.imwrite(folder / "cells.tif", volume, metadata={"axes": "ZYX"})
    np.save(folder / "series.npy", np.stack([volume, volume[::-1]]))  # TZYX
    return folder, volume, truth


def box_flag(mask: np.ndarray) -> str:
    box = Box.from_mask(mask)
    return f"{box.x0:g},{box.y0:g},{box.x1:g},{box.y1:g}"


def read_labels(path) -> np.ndarray:
    with open_volume(path) as volume:
        return np.stack([volume.plane(z) for z in range(len(volume))])


def test_a_box_on_one_slice_gives_a_label_volume(ellipsoid, tmp_path, capsys):
    folder, _, truth = ellipsoid
    out = tmp_path / "out" / "labels.ome.zarr"
    code = main(["segment-volume", str(folder / "cells.tif"), "--slice", str(MIDDLE), "--box", box_flag(truth[MIDDLE]),
                 "--out", str(out)])
    assert code == 0
    labels = read_labels(out)
    assert labels.shape == SHAPE and set(np.unique(labels)) == {0, 1}
    found = np.flatnonzero(labels.any(axis=(1, 2)))
    assert set(found) <= set(np.flatnonzero(truth.any(axis=(1, 2))))
    assert all(iou(labels[z] == 1, truth[z]) >= 0.8 for z in range(MIDDLE - 6, MIDDLE + 7))
    err = capsys.readouterr().err
    assert f"object 1 up from {MIDDLE}:" in err and f"object 1 down from {MIDDLE}:" in err
    assert f"{out}: 1 object(s) on {len(found)} of {SHAPE[0]} slices (classical, projection (mask + box))" in err
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.ome.zarr"]


def test_label_image_objects_along_time_of_a_series(ellipsoid, tmp_path, capsys):
    """--mask-labels: two drawn objects on frame 15 of Z=10 of a TZYX series, propagated along T (--at Z=10)."""
    folder, volume, truth = ellipsoid
    drawn = np.zeros(SHAPE[1:], np.uint16)
    series = np.stack([volume, volume[::-1]])[:, 10]  # the T axis of Z=10: two frames
    assert series.shape[0] == 2
    drawn[truth[10]] = 7
    drawn[60:70, 5:15] = 3
    from segprompt.io import write_mask

    write_mask(tmp_path / "drawn.png", drawn)
    out = tmp_path / "labels.tif"
    code = main(["segment-volume", str(folder / "series.npy"), "--at", "Z=10", "--slice", "0", "--mask-labels",
                 str(tmp_path / "drawn.png"), "--direction", "up", "--out", str(out)])
    assert code == 0
    labels = read_labels(out)
    assert labels.shape == (2, *SHAPE[1:])
    np.testing.assert_array_equal(labels[0], drawn)  # kept exactly as drawn
    with tifffile.TiffFile(out) as handle:
        assert handle.series[0].axes == "TYX"
    err = capsys.readouterr().err
    assert "object 3 up from 0" in err and "object 7 up from 0" in err


def test_sam2_propagates_with_its_video_model(ellipsoid, tmp_path, capsys):
    from segprompt.testing import tiny_sam2_video_dir

    folder, volume, truth = ellipsoid
    np.save(tmp_path / "small.npy", volume[MIDDLE - 2 : MIDDLE + 3, ::2, ::2])
    model = tiny_sam2_video_dir(tmp_path / "sam2")
    out = tmp_path / "labels.tif"
    code = main(["segment-volume", str(tmp_path / "small.npy"), "--slice", "2", "--point", "24,20", "--backend", "sam2",
                 "--model-dir", str(model), "--min-score", "0", "--out", str(out)])
    assert code == 0
    assert read_labels(out).shape == (5, 40, 48)
    assert "(sam2, sam2 video memory)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--slice", "30", "--box", "1,1,9,9"], "--slice 30 is out of range; {vol} has 30 slices along Z (0 to 29)"),
        (["--slice", "3"], "no prompt: give --point, --box, --mask-prompt, --prompt-file or --mask-labels"),
        (["--slice", "3", "--box", "1,1,200,9"], "box: (1, 1, 200, 9) is outside the 96x80 (W x H) image"),
        (["--slice", "3", "--box", "1,1,9,9", "--backend", "clipseg"], "backend 'clipseg' does not accept box prompts"),
        (["--slice", "3", "--point", "5,5", "--backend", "sam-hq", "--projection", "points", "--propagation", "video"],
         "--propagation video: backend 'sam-hq' has no video model; those that do: sam2, sam3-tracker"),
        (["--slice", "3", "--box", "1,1,9,9", "--at", "T3"], "--at 'T3': expected AXIS=INDEX, e.g. T=3"),
        (["--slice", "3", "--box", "1,1,9,9", "--axes", "ZYXC"], "axes 'ZYXC' name 4 axes but the array has 3"),
        (["--slice", "3", "--point", "5,5", "--backend", "sam2", "--mask-prompt", "{mask}"],
         "sam2 video memory takes a mask or points / a box on one slice, not both"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_any_work(ellipsoid, tmp_path, capsys, args, message):
    folder, _, truth = ellipsoid
    from segprompt.io import write_mask

    write_mask(tmp_path / "mask.png", truth[len(truth) // 2])  # a mask prompt must hold the object (slice 3 is empty)
    volume = folder / "cells.tif"
    args = [a.replace("{mask}", str(tmp_path / "mask.png")) for a in args]
    assert main(["segment-volume", str(volume), *args, "--out", str(tmp_path / "labels.tif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.replace("{vol}", str(volume)) in err, err
    assert not (tmp_path / "labels.tif").exists()


def test_outputs_and_series_are_checked_first(ellipsoid, tmp_path, capsys, failing_folder):
    folder, _, _ = ellipsoid
    series = str(folder / "series.npy")
    cases = [
        ([series, "--slice", "1", "--box", "1,1,9,9", "--out", str(tmp_path / "x.png")],
         "x.png: unsupported label volume type '.png'; use .tif, .tiff or .ome.zarr"),
        ([series, "--slice", "1", "--box", "1,1,9,9", "--out", str(tmp_path / "x.tif")],
         "stack planes along T and Z; fix one: T=K (propagate along Z) or Z=K (propagate along T)"),
        ([str(tmp_path / "none.tif"), "--slice", "1", "--box", "1,1,9,9", "--out", str(tmp_path / "x.tif")],
         "none.tif: no such file or folder"),
    ]
    (tmp_path / "ro").mkdir()
    failing_folder(tmp_path / "ro", errno.EROFS)
    cases.append(([series, "--slice", "1", "--box", "1,1,9,9", "--at", "T=0", "--out", str(tmp_path / "ro" / "x.tif")],
                  "read-only file system"))
    for args, message in cases:
        assert main(["segment-volume", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
