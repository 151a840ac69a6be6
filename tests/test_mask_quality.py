"""The quality estimate's cues against hand-computed values, and the colour floods it ranks."""

import numpy as np
import pytest

from segprompt.backends.colour_flood import colour_distance, colour_floods
from segprompt.backends.mask_quality import ALIGNMENT_FLOOR, centredness, evidence, solidity, superpixel_alignment, superpixels


def _quadrants() -> np.ndarray:
    """A 20 x 20 map of four 10 x 10 superpixels 0 1 / 2 3."""
    labels = np.zeros((20, 20), np.int32)
    labels[:10, 10:] = 1
    labels[10:, :10] = 2
    labels[10:, 10:] = 3
    return labels


def test_superpixel_alignment_by_hand():
    labels = _quadrants()
    whole = labels == 0
    assert superpixel_alignment(whole, labels) == 1.0  # takes one superpixel whole
    # Quadrant 0 and the left half of quadrant 1: 150 px, of which 50 split quadrant 1 (50 in, 50 out).
    leak = whole.copy()
    leak[:10, 10:15] = True
    assert superpixel_alignment(leak, labels) == pytest.approx(1 - 50 / 150)
    # A 4 x 4 blob inside one superpixel: 1 - min(16, 84) / 16 = 0, floored.
    blob = np.zeros_like(whole)
    blob[3:7, 3:7] = True
    assert superpixel_alignment(blob, labels) == ALIGNMENT_FLOOR
    assert superpixel_alignment(np.zeros_like(whole), labels) == 0.0
    # Two scales: a mask is measured at the coarsest whose mean superpixel is at most a quarter of it, else the finest.
    finer = np.arange(400, dtype=np.int32).reshape(20, 20) // 2  # 200 superpixels of 1 x 2 px
    finer[3:7, 3:7] = 1000  # ... and the blob, one superpixel
    assert superpixel_alignment(blob, np.stack([labels, finer])) == 1.0  # 16 px < 4 x 100: the finer map
    # 150 px < 4 x 100 too: the finer map, where only the ten 1 x 2 superpixels across column 14/15 are split.
    assert superpixel_alignment(leak, np.stack([labels, finer])) == pytest.approx(1 - 10 / 150)
    assert superpixel_alignment(np.ones_like(whole), np.stack([labels, finer])) == 1.0  # 400 px: the quadrants


def test_superpixels_come_at_every_scale_and_the_finer_is_finer():
    from skimage import data

    maps = superpixels(data.astronaut()[::2, ::2])
    assert maps.shape == (2, 256, 256) and maps.dtype == np.int32
    assert maps[0].max() < maps[1].max()


def test_solidity_by_hand():
    square = np.zeros((40, 40), bool)
    square[5:25, 5:25] = True
    assert solidity(square) == 1.0
    # An L of three 10 x 10 squares: its hull (through pixel centres) is the 19 x 19 square less a triangle.
    ell = np.zeros((40, 40), bool)
    ell[5:25, 5:15] = True
    ell[15:25, 15:25] = True
    hull_area = 19 * 19 - 10 * 10 / 2  # corners at pixel centres: (5,5) (14,5) (24,15) (24,24) (5,24)
    assert solidity(ell) == pytest.approx(300 / hull_area, rel=0.02)
    assert solidity(np.zeros((4, 4), bool)) == 0.0


def test_centredness_is_one_at_the_middle_and_falls_towards_the_edge():
    rows, cols = np.ogrid[:101, :101]
    disc = (cols - 50) ** 2 + (rows - 50) ** 2 <= 40**2
    assert centredness(disc, np.array([[50.0, 50.0]])) == pytest.approx(1.0)
    assert centredness(disc, np.array([[50.0, 30.0]])) == pytest.approx(0.5, abs=0.03)  # 20 of 40 px deep
    assert centredness(disc, np.array([[50.0, 50.0], [50.0, 30.0]])) == pytest.approx(0.75, abs=0.02)
    assert centredness(disc, np.array([[0.0, 0.0]])) == 0.0  # outside
    assert centredness(np.zeros_like(disc), np.array([[50.0, 50.0]])) == 0.0


def test_evidence_is_the_geometric_mean_of_alignment_and_solidity():
    labels = _quadrants()
    leak = labels == 0
    leak[:10, 10:15] = True  # a 10 x 15 rectangle: solidity 1
    assert evidence(leak, labels) == pytest.approx(np.sqrt((1 - 50 / 150) * 1.0))


def test_superpixels_follow_a_sharp_edge():
    image = np.full((120, 160, 3), 40, np.uint8)
    image[30:90, 40:120] = 210
    labels = superpixels(image)
    assert labels.dtype == np.int32 and labels.shape == (2, 120, 160)
    np.testing.assert_array_equal(labels, superpixels(image))  # deterministic
    rectangle = np.zeros((120, 160), bool)
    rectangle[30:90, 40:120] = True
    assert all(superpixel_alignment(rectangle, level) > 0.95 for level in labels)  # at each scale


def _two_tone(size=(80, 100), square=(20, 60, 30, 70), inside=(200, 60, 60), outside=(60, 60, 200)):
    image = np.zeros((*size, 3), np.uint8)
    image[:] = outside
    r0, r1, c0, c1 = square
    image[r0:r1, c0:c1] = inside
    noise = np.random.default_rng(0).normal(0, 6, image.shape)  # sensor noise: colours spread, tolerances matter
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    truth = np.zeros(size, bool)
    truth[r0:r1, c0:c1] = True
    return image, truth


def _disc(shape, x, y, radius=2):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (cols - x) ** 2 + (rows - y) ** 2 <= radius**2


def test_floods_are_nested_hold_their_seed_and_one_is_the_uniform_object():
    image, truth = _two_tone()
    seed = _disc(truth.shape, 50, 40)
    floods = colour_floods(image, [seed])
    assert len(floods) == 16
    quantiles = [q for _, q in floods]
    assert quantiles == sorted(quantiles)
    for (smaller, _), (larger, _) in zip(floods, floods[1:]):
        assert not (smaller & ~larger).any()
    assert all(region[seed].all() for region, _ in floods)
    # The red square is 16 % of the image: a tolerance between its colour spread and the blue's distance finds it.
    best = max(np.count_nonzero(r & truth) / np.count_nonzero(r | truth) for r, _ in floods)
    assert best > 0.9


def test_colour_distance_is_to_the_nearest_seed_colour():
    image, truth = _two_tone()
    red_seed = _disc(truth.shape, 50, 40)
    blue_seed = _disc(truth.shape, 5, 5)
    distance = colour_distance(image, [red_seed, blue_seed])
    # Both colours are seed colours: away from the border every pixel is within the noise of one of them.
    assert distance[40, 50] < 5 and distance[5, 5] < 5 and distance[70, 90] < 5
    only_red = colour_distance(image, [red_seed])
    assert only_red[70, 90] > 50
