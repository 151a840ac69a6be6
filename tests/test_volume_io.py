"""Volumes in (lazily, with named axes) and label volumes out (TIFF, OME-Zarr), on small arrays."""

from __future__ import annotations

import errno
import json
import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr

from segprompt.errors import ImageError, StorageError
from segprompt.volume.reader import SliceImages, Volume, default_axes, intensity_window, open_volume
from segprompt.volume.writer import check_label_volume_output, write_label_volume


def ramp(shape, dtype=np.uint16) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 997).astype(dtype).reshape(shape)


# -- axes -------------------------------------------------------------------------------------


def test_default_axes_follow_the_stated_rules():
    assert default_axes((10, 32, 40), "a") == "ZYX"
    assert default_axes((10, 32, 40, 3), "a") == "ZYXC"
    assert default_axes((5, 10, 32, 40), "a") == "TZYX"
    with pytest.raises(ImageError, match="single 2-D image"):
        default_axes((32, 40), "a")
    with pytest.raises(ImageError, match="may be one RGB image"):
        default_axes((32, 40, 3), "a")
    with pytest.raises(ImageError, match="cannot guess the axes of a 5-D"):
        default_axes((2, 3, 4, 32, 40), "a")


def test_planes_come_out_as_rows_cols_channels_whatever_the_storage_order():
    data = ramp((4, 3, 20, 24))  # Z C Y X
    volume = Volume(data, "ZCYX")
    assert volume.stack_axis == "Z" and len(volume) == 4 and volume.image_hw == (20, 24)
    np.testing.assert_array_equal(volume.plane(2), np.moveaxis(data[2], 0, -1))
    xyz = Volume(np.ascontiguousarray(np.transpose(data[:, 0], (2, 1, 0))), "XYZ")  # stored X, Y, Z
    np.testing.assert_array_equal(xyz.plane(1), data[1, 0])
    single = Volume(ramp((4, 1, 20, 24)), "ZCYX")
    assert single.plane(0).shape == (20, 24)


def test_select_fixes_axes_and_the_stack_axis_must_be_unambiguous():
    series = ramp((3, 5, 16, 18))
    volume = Volume(series, "TZYX", name="series.npy")
    with pytest.raises(ImageError, match=r"stack planes along T and Z; fix one: T=K \(propagate along Z\) or Z=K"):
        len(volume)
    along_z = volume.select(T=2)
    assert along_z.axes == "ZYX" and len(along_z) == 5
    np.testing.assert_array_equal(along_z.plane(4), series[2, 4])
    along_t = volume.select(z=-1)  # lower case and negative indices work
    assert along_t.axes == "TYX" and len(along_t) == 3
    np.testing.assert_array_equal(along_t.plane(1), series[1, 4])
    with pytest.raises(ImageError, match="T=3 is out of range; the volume has 3 along T"):
        volume.select(T=3)
    with pytest.raises(ImageError, match="no axis C to fix among TZYX"):
        volume.select(C=0)
    with pytest.raises(ImageError, match="slice 5 is out of range; Z has 5 slices"):
        along_z.plane(5)
    channels = Volume(ramp((4, 6, 16, 18)), "ZCYX", name="six.npy")
    with pytest.raises(ImageError, match=r"6 channels .*pick one with C=K"):
        len(channels)
    assert channels.select(C=5).plane(0).shape == (16, 18)
    with pytest.raises(ImageError, match=r"unknown axis letter\(s\) 'Q' in axes 'ZYQ'"):
        Volume(ramp((2, 3, 4)), "ZYQ")
    with pytest.raises(ImageError, match="must include Y and X"):
        Volume(ramp((2, 3, 4)), "TZX")


# -- files ------------------------------------------------------------------------------------


def test_tiff_npy_zarr_and_ome_zarr_open_with_their_axes(tmp_path):
    data = ramp((6, 20, 24))
    tifffile.imwrite(tmp_path / "shaped.tif", data, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "plain.tif", data, metadata=None)  # no axes: tifffile says QYX
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([data.astype(np.uint8)] * 3, -1), photometric="rgb")
    tifffile.imwrite(tmp_path / "imagej.tif", data.reshape(2, 3, 20, 24), imagej=True, metadata={"axes": "TZYX"})
    np.save(tmp_path / "stack.npy", data)
    zarr.create_array(str(tmp_path / "plain.zarr"), data=data, chunks=(1, 20, 24))
    write_label_volume(tmp_path / "ome.ome.zarr", data, axes="TYX")

    expected = {"shaped.tif": "ZYX", "plain.tif": "ZYX", "rgb.tif": "ZYXC", "imagej.tif": "TZYX",
                "stack.npy": "ZYX", "plain.zarr": "ZYX", "ome.ome.zarr": "TYX"}
    for name, axes in expected.items():
        with open_volume(tmp_path / name) as volume:
            assert volume.axes == axes, name
            plane = (volume.select(T=1) if axes == "TZYX" else volume).plane(2)
            reference = data.reshape(2, 3, 20, 24)[1, 2] if axes == "TZYX" else data[2]
            if axes == "ZYXC":
                reference = np.stack([reference.astype(np.uint8)] * 3, -1)
            np.testing.assert_array_equal(plane, reference, err_msg=name)
    assert isinstance(open_volume(tmp_path / "stack.npy").data, np.memmap)  # never read whole
    assert open_volume(tmp_path / "plain.tif", axes="TYX").axes == "TYX"  # --axes overrides the file


def test_bad_volume_files_are_one_line_errors(tmp_path):
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    (tmp_path / "image.png").write_bytes(b"x")
    np.save(tmp_path / "flat.npy", np.zeros((20, 30)))
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    cases = {
        "missing.tif": "missing.tif: no such file or folder",
        "broken.tif": "broken.tif: cannot read TIFF",
        "image.png": "unsupported volume type '.png'",
        "flat.npy": "a single 2-D image of shape (20, 30), not a volume",
        "group.zarr": "a Zarr group without OME-Zarr multiscales",
    }
    for name, message in cases.items():
        with pytest.raises(ImageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            open_volume(tmp_path / name)


class CountingStore(zarr.storage.WrapperStore):
    """Counts the chunk reads of a Zarr v3 store (keys ``c/...``; metadata keys are not chunks)."""

    def __init__(self, store):
        super().__init__(store)
        self.chunk_reads: list[str] = []

    async def get(self, key, prototype, byte_range=None):
        if key.startswith("c/"):
            self.chunk_reads.append(key)
        return await super().get(key, prototype, byte_range)


def test_zarr_planes_are_read_one_chunk_at_a_time_and_never_whole(tmp_path):
    """A 64-slice volume is read slice by slice: each plane fetches only its own chunk, and the peak Python memory
    stays a few planes, far below the 8 MB volume."""
    shape = (64, 256, 256)  # uint16: 8 MiB; one plane 128 KiB
    array = zarr.create_array(str(tmp_path / "big.zarr"), shape=shape, chunks=(1, 256, 256), dtype=np.uint16)
    for z in range(shape[0]):
        array[z] = np.full(shape[1:], z, np.uint16) + ramp(shape[1:])
    store = CountingStore(zarr.storage.LocalStore(str(tmp_path / "big.zarr"), read_only=True))
    volume = Volume(zarr.open_array(store, mode="r"), "ZYX", name="big.zarr")
    plane_bytes = 256 * 256 * 2

    tracemalloc.start()
    try:
        for z in range(shape[0]):
            plane = volume.plane(z)
            assert plane[0, 0] == z
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sorted(store.chunk_reads) == sorted(f"c/{z}/0/0" for z in range(shape[0]))  # each chunk once, none twice
    assert peak < 8 * plane_bytes, f"peak {peak / 2**20:.2f} MiB while reading planes of {plane_bytes / 2**20:.2f} MiB"

    images = SliceImages(volume)  # the intensity window samples 16 planes, not the volume
    store.chunk_reads.clear()
    images.window  # noqa: B018 (computed at construction)
    assert len(SliceImages(volume, window="auto").window) == 2 and len(store.chunk_reads) == 16


def test_one_intensity_window_for_every_slice():
    data = np.zeros((5, 8, 8), np.uint16)
    data[:, 2:6, 2:6] = np.arange(5)[:, None, None] * 1000 + 500
    data[0, 0, 0] = 4500
    images = SliceImages(Volume(data, "ZYX"))
    low, high = images.window
    assert low < 500 and high > 4000
    # The same raw value gives the same grey on every slice (per-slice scaling would not).
    grey = [images[z][3, 3, 0] for z in range(5)]
    assert grey == sorted(grey) and len(set(grey)) == 5
    assert images[2].shape == (8, 8, 3) and images[2].dtype == np.uint8
    unit = Volume(np.linspace(0, 1, 5 * 64).reshape(5, 8, 8).astype(np.float32), "ZYX")
    assert intensity_window(unit) == (0.0, 1.0)
    assert SliceImages(Volume(data.astype(np.uint8), "ZYX")).window is None


# -- label volumes out ------------------------------------------------------------------------


def test_label_volumes_round_trip_as_tiff_and_ome_zarr(tmp_path):
    labels = np.zeros((7, 600, 40), np.int32)  # tall: the OME-Zarr pyramid gets a second level
    labels[2, 10:300, 5:20] = 1
    labels[3, 100:200, 10:30] = 70000  # needs uint32
    for name in ("labels.tif", "labels.ome.zarr"):
        write_label_volume(tmp_path / name, labels, axes="ZYX")
        with open_volume(tmp_path / name) as volume:
            assert volume.axes == "ZYX" and volume.dtype == np.uint32
            np.testing.assert_array_equal(np.stack([volume.plane(z) for z in range(7)]), labels)
    small = labels.copy()
    small[3][small[3] == 70000] = 2
    write_label_volume(tmp_path / "small.tif", small, axes="TYX")
    with tifffile.TiffFile(tmp_path / "small.tif") as handle:
        assert handle.series[0].axes == "TYX" and handle.series[0].dtype == np.uint16 and len(handle.pages) == 7

    meta = json.loads((tmp_path / "labels.ome.zarr" / "zarr.json").read_text())["attributes"]["ome"]
    assert meta["version"] == "0.5"
    multiscale = meta["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]] == [[1.0, 1.0, 1.0], [1.0, 2.0, 2.0]]
    assert [c["label-value"] for c in meta["image-label"]["colors"]] == [1, 70000]
    level1 = zarr.open_array(str(tmp_path / "labels.ome.zarr" / "1"), mode="r")
    np.testing.assert_array_equal(level1[2], labels[2, ::2, ::2])
    assert level1.chunks == (1, 300, 20)


class FailsWhileWriting:
    """A label volume whose plane 2 cannot be produced the second time it is asked for (mid-write)."""

    def __init__(self, labels):
        self.labels, self.shape, self.asked = labels, labels.shape, {}

    def __getitem__(self, index):
        self.asked[index] = self.asked.get(index, 0) + 1
        if index == 2 and self.asked[index] == 2:
            raise OSError(5, "Input/output error", "volume.zarr")
        return self.labels[index]


def test_label_volume_outputs_are_checked_and_never_half_written(tmp_path, failing_folder):
    with pytest.raises(ImageError, match=r"labels.png: unsupported label volume type '.png'"):
        check_label_volume_output(tmp_path / "labels.png")
    (tmp_path / "data.zarr").mkdir()
    (tmp_path / "data.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="is not a Zarr store, refusing to replace it"):
        check_label_volume_output(tmp_path / "data.zarr")
    with pytest.raises(ImageError, match=r"plane 0 is not an integer \(4, 5\) map \(float32"):
        write_label_volume(tmp_path / "bad.tif", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ImageError, match="label volume axes must be one of ZYX, TYX"):
        write_label_volume(tmp_path / "bad.tif", np.zeros((3, 4, 5), np.int32), axes="ZCX")

    labels = ramp((4, 64, 64)).astype(np.int32)
    write_label_volume(tmp_path / "old.tif", labels[:2])
    write_label_volume(tmp_path / "old.ome.zarr", labels[:2])
    before = (tmp_path / "old.tif").read_bytes()
    for name in ("old.tif", "old.ome.zarr"):
        with pytest.raises(StorageError, match="input/output error"):
            write_label_volume(tmp_path / name, FailsWhileWriting(labels))
    assert (tmp_path / "old.tif").read_bytes() == before  # the old files are untouched ...
    with open_volume(tmp_path / "old.ome.zarr") as volume:
        assert len(volume) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.zarr", "old.ome.zarr", "old.tif"]  # ... no temporaries

    (tmp_path / "ro").mkdir()
    failing_folder(tmp_path / "ro", errno.EROFS)
    for name in ("labels.tif", "labels.ome.zarr"):
        with pytest.raises(StorageError, match="read-only file system"):
            check_label_volume_output(tmp_path / "ro" / name)
