"""Image reading, the normalisation rules of segprompt.io, mask writing and overlays."""

import cv2
import numpy as np
import pytest
import skimage.data
import tifffile

from segprompt import io
from segprompt.errors import ImageError


# --- normalisation rules (module docstring of segprompt.io) -------------------------------------


def test_uint8_rgb_unchanged():
    image = skimage.data.astronaut()
    out = io.to_rgb_uint8(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out, image)


def test_grayscale_replicated_to_three_channels():
    camera = skimage.data.camera()
    for gray in (camera, camera[..., None]):
        out = io.to_rgb_uint8(gray)
        assert out.shape == (*camera.shape, 3)
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], camera)


def test_rgba_drops_alpha():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = [10, 20, 30]
    rgba[..., 3] = 7
    np.testing.assert_array_equal(io.to_rgb_uint8(rgba), np.full((2, 2, 3), [10, 20, 30], np.uint8))


def test_bool_maps_to_0_and_255():
    out = io.to_rgb_uint8(np.array([[True, False]]))
    np.testing.assert_array_equal(out[..., 0], [[255, 0]])


def test_uint16_percentile_scaling():
    # 0..999: the 0.5th percentile is 4.995, the 99.5th 994.005 (linear interpolation).
    data = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    out = io.to_rgb_uint8(data)[..., 0]
    low, high = 4.995, 994.005
    expected = np.clip(np.rint((data - low) * 255 / (high - low)), 0, 255)
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255


def test_float_in_unit_range_is_multiplied_by_255():
    data = np.array([[0.0, 0.5, 1.0]])
    np.testing.assert_array_equal(io.to_rgb_uint8(data)[..., 0], [[0, 128, 255]])


def test_float_outside_unit_range_is_percentile_scaled_and_nan_becomes_0():
    data = np.linspace(-50, 150, 201).reshape(1, 201)
    data[0, 100] = np.nan
    out = io.to_rgb_uint8(data)[..., 0]
    assert out[0, 0] == 0 and out[0, -1] == 255
    assert out[0, 100] == 0  # NaN -> 0
    assert np.all(np.diff(out[0, 101:].astype(int)) >= 0)


def test_constant_wide_image_maps_to_zero():
    assert not io.to_rgb_uint8(np.full((3, 3), 700, np.uint16)).any()


@pytest.mark.parametrize("shape", [(4, 4, 2), (2, 4, 4, 3), (0, 3)])
def test_unusable_shapes_raise(shape):
    with pytest.raises(ImageError):
        io.to_rgb_uint8(np.zeros(shape, np.uint8))


def test_unsupported_pixel_type():
    with pytest.raises(ImageError, match="unsupported pixel type"):
        io.to_rgb_uint8(np.zeros((2, 2), complex))


# --- reading files --------------------------------------------------------------------------------


def test_png_and_jpeg_read_as_rgb(tmp_path):
    image = skimage.data.chelsea()
    png = tmp_path / "cat.png"
    cv2.imwrite(str(png), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(io.read_image(png), image)  # BGR on disk, RGB in memory
    jpg = tmp_path / "cat.jpg"
    cv2.imwrite(str(jpg), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert np.abs(io.read_image(jpg).astype(int) - image).mean() < 3


def test_rgba_png_drops_alpha(tmp_path):
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[..., 3] = 128
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(io.read_image(path)[0, 0], [200, 0, 0])


def test_16_bit_png_is_scaled(tmp_path):
    data = (np.arange(100, dtype=np.uint16) * 600).reshape(10, 10)
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), data)
    np.testing.assert_array_equal(io.read_image(path), io.to_rgb_uint8(data))


def test_tiff_plane_selection(tmp_path):
    stack = np.stack([np.full((4, 5), v, np.uint8) for v in (10, 20, 30)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")  # a grey stack; (3, H, W) alone would be planar RGB
    assert io.read_image(path)[0, 0, 0] == 10  # default: the first plane
    assert io.read_image(path, plane=2)[0, 0, 0] == 30
    assert io.read_image(path, plane=-1)[0, 0, 0] == 30
    with pytest.raises(ImageError, match="plane=3 out of range; the stack has 3 planes"):
        io.read_image(path, plane=3)


def test_plane_of_a_single_image_is_an_error(tmp_path):
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, np.zeros((4, 5, 3), np.uint8))
    assert io.read_image(path, plane=0).shape == (4, 5, 3)
    with pytest.raises(ImageError, match="plane=1 requested but the file holds a single image"):
        io.read_image(path, plane=1)


def test_npy_stack(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, np.stack([np.zeros((5, 6)), np.ones((5, 6))]).astype(np.float32))
    assert io.read_image(path, plane=1)[0, 0, 0] == 255


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.png", None, "no such file"),
        ("empty.png", b"", "file is empty"),
        ("corrupt.png", b"not a png at all", "cannot decode the file as PNG"),
        ("corrupt.tif", b"not a tiff file", "cannot read TIFF"),
        ("corrupt.npy", b"\x93NUMPY garbage", "cannot read NumPy file"),
        ("image.gif", b"GIF89a", "unsupported image type '.gif'"),
    ],
)
def test_bad_files_raise_image_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError) as info:
        io.read_image(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_read_mask_keeps_label_values_and_rejects_colour(tmp_path):
    labels = np.array([[0, 1], [2, 300]], np.uint16)
    path = tmp_path / "labels.png"
    cv2.imwrite(str(path), labels)
    np.testing.assert_array_equal(io.read_mask(path), labels)
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), np.dstack([np.zeros((2, 2), np.uint8), np.ones((2, 2), np.uint8), np.zeros((2, 2), np.uint8)]))
    with pytest.raises(ImageError, match="differing colour channels"):
        io.read_mask(colour)
    with pytest.raises(ImageError, match="no such file"):
        io.read_mask(tmp_path / "nope.png")


# --- writing --------------------------------------------------------------------------------------


def test_write_mask_bool_and_labels(tmp_path):
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    io.write_mask(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(io.read_mask(tmp_path / "m.png"), mask.astype(np.uint8) * 255)
    labels = np.array([[0, 1000], [7, 0]], np.int64)
    io.write_mask(tmp_path / "l.png", labels)
    written = io.read_mask(tmp_path / "l.png")
    assert written.dtype == np.uint16
    np.testing.assert_array_equal(written, labels)
    io.write_mask(tmp_path / "l.tif", labels)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "l.tif"), labels.astype(np.uint16))


@pytest.mark.parametrize(
    "mask, name, message",
    [
        (np.zeros((2, 2, 2), bool), "m.png", "must be 2-D"),
        (np.zeros((2, 2), np.float32), "m.png", "bool or integer labels"),
        (np.array([[-1, 0]]), "m.png", "non-negative"),
        (np.array([[70000, 0]]), "m.png", "need a .tif output"),
        (np.zeros((2, 2), bool), "m.jp2", "unsupported output type"),
    ],
)
def test_bad_masks_leave_no_file_behind(tmp_path, mask, name, message):
    with pytest.raises(ImageError, match=message):
        io.write_mask(tmp_path / name, mask)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_the_old_file_and_no_temporary_on_failure(tmp_path):
    target = tmp_path / "mask.png"
    io.write_mask(target, np.ones((3, 3), bool))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as temp:
            temp.write_bytes(b"half written")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]


def test_atomic_write_text(tmp_path):
    path = tmp_path / "sub" / "a.json"
    io.atomic_write_text(path, '{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_overlay_colours_foreground_and_outlines_it():
    image = np.zeros((10, 10, 3), np.uint8)
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    out = io.overlay(image, mask, alpha=0.5)
    colour = io.mask_colour(image, mask)
    assert out.dtype == np.uint8 and out.shape == (10, 10, 3)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])  # background untouched
    np.testing.assert_array_equal(out[2, 2], colour)  # inner boundary in the mask colour at full strength
    np.testing.assert_array_equal(out[5, 5], (colour * 0.5).astype(np.uint8))  # interior: half of it over black
    with pytest.raises(ImageError, match="does not match"):
        io.overlay(image, np.zeros((3, 3), bool))


def test_label_maps_cycle_the_palette():
    labels = np.zeros((6, 12), np.int32)
    labels[:, 4:8], labels[:, 8:] = 1, 2
    out = io.overlay(np.zeros((6, 12, 3), np.uint8), labels)
    np.testing.assert_array_equal(out[3, 5], (io.OVERLAY_COLOURS[0] * 0.5).astype(np.uint8))
    np.testing.assert_array_equal(out[3, 10], (io.OVERLAY_COLOURS[1] * 0.5).astype(np.uint8))


@pytest.mark.parametrize("object_rgb", [(200, 20, 30), (230, 200, 40), (40, 160, 60)])
def test_mask_colour_stays_visible_on_an_object_of_any_colour(object_rgb):
    image = np.full((20, 20, 3), 128, np.uint8)
    image[5:15, 5:15] = object_rgb
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    lab = io._lab(np.vstack([io.OVERLAY_COLOURS, np.uint8(object_rgb)[None]]))
    distances = np.linalg.norm(lab[:-1] - lab[-1], axis=1)
    chosen = io.mask_colour(image, mask)
    # The farthest palette colour from the object's; for a red object never the palette's red.
    assert distances[np.flatnonzero((io.OVERLAY_COLOURS == chosen).all(axis=1))[0]] == distances.max()
    assert distances.max() > 2 * np.sort(distances)[0]


@pytest.mark.shared_data
def test_coco_banana_overlay_contrasts_with_the_banana(shared_data):
    folder = shared_data("coco_mval")
    image = io.read_image(folder / "images" / "banana00_000000193926.jpg")
    mask = io.read_mask(folder / "masks" / "banana00_000000193926.png") > 0
    lab = io._lab(np.vstack([io.OVERLAY_COLOURS, image[mask].mean(axis=0).round().astype(np.uint8)[None]]))
    distance = lambda rgb: np.linalg.norm(io._lab(rgb[None])[0] - lab[-1])  # noqa: E731
    # The old fixed red sat 40 Lab units from the banana's brown-yellow; the chosen colour is far from it.
    assert distance(io.mask_colour(image, mask)) > 1.5 * distance(io.OVERLAY_COLOURS[0])


def test_overlay_draws_points_in_include_and_exclude_colours_and_the_box():
    from segprompt.prompts import Box, Points, Prompt

    image = np.full((100, 200, 3), 128, np.uint8)
    prompt = Prompt(points=Points.from_lists([(50, 40)], [(150, 60)]), box=Box(20, 10, 180, 90))
    out = io.overlay(image, np.zeros((100, 200), bool), prompt=prompt)
    np.testing.assert_array_equal(out[40, 50], io.PROMPT_COLOURS["include"])
    np.testing.assert_array_equal(out[60, 150], io.PROMPT_COLOURS["exclude"])
    np.testing.assert_array_equal(out[50, 20], io.PROMPT_COLOURS["box"])  # left edge, x0
    np.testing.assert_array_equal(out[89, 100], io.PROMPT_COLOURS["box"])  # bottom edge, the last row inside
    np.testing.assert_array_equal(out[50, 100], [128, 128, 128])  # inside untouched
    assert (out[50, 19] == 0).all() and (out[50, 21] == 0).all()  # black either side of the box line
