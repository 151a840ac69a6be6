"""Automatic point strategies on hand-made masks.

Convention under test: every point is ``(x, y)`` = ``(column, row)``, so
``mask[y, x]`` is the pixel a point names. The masks are non-square and
off-centre, so swapping the axes would put points outside the image or the
mask.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from segprompt.pointprompt.counts import DEFAULT_COUNTS, PointCounts
from segprompt.pointprompt.strategies import (
    PointSet,
    StrategyError,
    Target,
    create_strategy,
    kmedoids,
    strategy_names,
    strategy_rng,
)
from segprompt.pointprompt.strategies.interactive import next_click
from segprompt.pointprompt.strategies.saliency import spectral_residual
from segprompt.prompts import Points

STATIC = [name for name in strategy_names() if name != "error_driven"]
H, W = 40, 100


def _scene() -> Target:
    """A 40x100 textured image; the object is an off-centre 12-row x 30-column block."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[5:17, 62:92] = True
    ignore = np.zeros((H, W), bool)
    ignore[:, :10] = True
    return Target(image, mask, ignore=ignore)


def test_paper_strategies_and_additions_are_registered():
    assert strategy_names()[:2] == ["random", "kmedoids"]
    assert {"random", "kmedoids", "shi_tomasi", "entropy", "max_distance", "saliency"} <= set(STATIC)
    assert {"distance_centre", "feature_kmedoids", "error_driven"} <= set(strategy_names())


@pytest.mark.parametrize("name", STATIC)
def test_points_lie_in_their_region_with_the_asked_counts(name):
    target = _scene()
    points = create_strategy(name).select(target, 6, 3, strategy_rng(0, "img", name))
    assert points.include.shape == (6, 2) and points.exclude.shape == (3, 2)
    x, y = points.include[:, 0].astype(int), points.include[:, 1].astype(int)
    # (x, y) = (col, row): the object spans columns 62..91 and rows 5..16.
    assert (x >= 62).all() and (x <= 91).all() and (y >= 5).all() and (y <= 16).all()
    assert target.mask[y, x].all()
    ex, ey = points.exclude[:, 0].astype(int), points.exclude[:, 1].astype(int)
    assert target.background[ey, ex].all(), "exclude points must avoid the object and the ignored band"
    assert len({tuple(p) for p in points.include.tolist()}) == 6, "points must be distinct"
    prompt = points.to_prompt().validate_for((H, W))
    assert prompt.points.labels.tolist() == [1] * 6 + [0] * 3


@pytest.mark.parametrize("name", STATIC)
def test_same_seed_same_points(name):
    first = create_strategy(name).select(_scene(), 5, 2, strategy_rng(7, "a", name))
    second = create_strategy(name).select(_scene(), 5, 2, strategy_rng(7, "a", name))
    assert np.array_equal(first.include, second.include) and np.array_equal(first.exclude, second.exclude)


@pytest.mark.parametrize("name", ["random", "entropy", "max_distance"])
def test_random_strategies_depend_on_the_seed(name):
    draws = {
        create_strategy(name).select(_scene(), 4, 1, strategy_rng(seed, "a")).include.tobytes() for seed in range(4)
    }
    assert len(draws) > 1


@pytest.mark.parametrize("name", STATIC)
def test_tiny_region_gives_every_pixel_once(name):
    target = _scene()
    target.mask[:] = False
    target.mask[30, 40:43] = True  # three pixels
    points = create_strategy(name).select(target, 5, 0, strategy_rng(0))
    assert sorted(map(tuple, points.include.astype(int).tolist())) == [(40, 30), (41, 30), (42, 30)]
    assert points.exclude.shape == (0, 2)


def test_no_background_gives_no_exclude_points():
    target = Target(np.zeros((8, 12, 3), np.uint8), np.ones((8, 12), bool))
    points = create_strategy("kmedoids").select(target, 2, 3, strategy_rng(0))
    assert points.include.shape == (2, 2) and points.exclude.shape == (0, 2)


def test_kmedoids_finds_the_cluster_medians():
    data = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0], [13.0], [14.0]])
    assert sorted(kmedoids(data, 2).tolist()) == [1, 5]
    assert kmedoids(data, 20).tolist() == list(range(8))
    duplicates = np.zeros((5, 2))
    assert sorted(kmedoids(duplicates, 3).tolist()) == sorted(set(kmedoids(duplicates, 3).tolist()))


def test_kmedoids_strategy_puts_one_point_per_blob():
    mask = np.zeros((30, 90), bool)
    mask[2:8, 5:11] = True
    mask[20:26, 70:76] = True
    points = create_strategy("kmedoids").select(Target(np.zeros((30, 90, 3), np.uint8), mask), 2, 0, strategy_rng(0))
    assert sorted(map(tuple, points.include.astype(int).tolist())) in ([(7, 4), (72, 22)], [(7, 5), (72, 22)], [(7, 4), (72, 23)], [(7, 5), (72, 23)])


def test_distance_centre_starts_at_the_disk_centre():
    yy, xx = np.mgrid[:H, :W]
    mask = (xx - 70) ** 2 + (yy - 20) ** 2 <= 10**2
    points = create_strategy("distance_centre").select(Target(np.zeros((H, W, 3), np.uint8), mask), 3, 0, strategy_rng(0))
    assert points.include[0].tolist() == [70.0, 20.0]


def test_max_distance_spreads_points_or_follows_the_paper():
    mask = np.zeros((H, W), bool)
    mask[5, :] = True
    target = Target(np.zeros((H, W, 3), np.uint8), mask)
    spread = create_strategy("max_distance").select(target, 3, 0, strategy_rng(3)).include
    assert set(spread[:, 1].tolist()) == {5.0}
    start, second, third = spread[:, 0]
    assert second == (99.0 if start < 49.5 else 0.0)  # the far end of the line
    gaps = np.minimum(np.abs(np.arange(100) - start), np.abs(np.arange(100) - second))
    assert gaps[int(third)] == gaps.max()  # then the point farthest from both
    paper = create_strategy("max_distance", farthest_from="first").select(target, 3, 0, strategy_rng(3)).include
    first = paper[0, 0]
    far_end = 99.0 if first < 50 else 0.0
    assert far_end in paper[1:, 0] and abs(paper[1, 0] - paper[2, 0]) == 1.0
    with pytest.raises(StrategyError, match="farthest_from"):
        create_strategy("max_distance", farthest_from="median")


def test_entropy_picks_the_other_texture():
    rng = np.random.default_rng(0)
    image = np.zeros((H, W, 3), np.uint8)
    image[:, 50:] = rng.integers(0, 255, (H, 50, 1), dtype=np.uint8)  # flat left half, noisy right half
    target = Target(image, np.ones((H, W), bool))
    for seed in range(3):
        points = create_strategy("entropy").select(target, 5, 0, strategy_rng(seed)).include
        first_is_flat = points[0, 0] < 50 - 5
        others = points[1:, 0]
        assert ((others >= 50 - 4) if first_is_flat else (others < 50 + 4)).all()


def test_shi_tomasi_finds_the_corners_of_a_square():
    image = np.zeros((60, 120, 3), np.uint8)
    image[20:41, 70:101] = 255  # corners at (70, 20), (100, 20), (70, 40), (100, 40)
    mask = np.zeros((60, 120), bool)
    mask[5:56, 55:116] = True
    points = create_strategy("shi_tomasi").select(Target(image, mask), 4, 0, strategy_rng(0)).include
    expected = np.array([[70, 20], [100, 20], [70, 40], [100, 40]])
    distance = np.linalg.norm(points[:, None, :] - expected[None], axis=2)
    assert distance.min(axis=0).max() <= 2.0


def test_shi_tomasi_on_a_thin_flat_mask_falls_back_and_fills():
    mask = np.zeros((H, W), bool)
    mask[10, 20:80] = True  # one pixel wide: every erosion empties it
    points = create_strategy("shi_tomasi").select(Target(np.zeros((H, W, 3), np.uint8), mask), 4, 0, strategy_rng(0))
    assert points.include.shape == (4, 2) and mask[points.include[:, 1].astype(int), points.include[:, 0].astype(int)].all()


def test_spectral_residual_peaks_at_an_odd_blob():
    gray = np.full((64, 128), 100, np.uint8)
    gray[40:46, 30:36] = 250
    saliency = spectral_residual(gray)
    row, col = np.unravel_index(np.argmax(saliency), saliency.shape)
    assert abs(row - 42.5) <= 4 and abs(col - 32.5) <= 4
    assert saliency.min() == 0.0 and saliency.max() == 1.0


def test_feature_kmedoids_uses_the_given_features():
    mask = np.ones((H, W), bool)
    features = np.zeros((H, W, 2), np.float32)
    features[:, 50:, 0] = 1.0  # two feature clusters: left and right halves
    target = Target(np.zeros((H, W, 3), np.uint8), mask, features=features)
    points = create_strategy("feature_kmedoids").select(target, 2, 0, strategy_rng(0)).include
    assert sorted(points[:, 0] >= 50) == [False, True]


def _blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:H, :W]
    big = (xx - 25) ** 2 + (yy - 20) ** 2 <= 12**2
    small = (xx - 80) ** 2 + (yy - 12) ** 2 <= 5**2
    spurious = np.zeros((H, W), bool)
    spurious[30:38, 55:75] = True
    return big, small, spurious


def test_error_driven_clicks_the_largest_error_and_stops_when_right():
    big, small, spurious = _blobs()
    gt = big | small
    labels, _ = ndimage.label(gt)

    def predict(points: PointSet) -> np.ndarray:
        # A model that segments the ground-truth blob under each include click
        # and also the spurious box, until an exclude click lands in the box.
        xy = points.include.astype(int)
        pred = np.isin(labels, labels[xy[:, 1], xy[:, 0]])
        excluded = any(spurious[int(y), int(x)] for x, y in points.exclude)
        return pred if excluded else pred | spurious

    target = Target(np.zeros((H, W, 3), np.uint8), gt, predict=predict)
    steps = create_strategy("error_driven").timesteps(target, 4, 2, strategy_rng(0))
    assert [len(s.include) for s in steps] == [1, 1, 2]
    assert [len(s.exclude) for s in steps] == [0, 1, 1]
    assert steps[0].include.tolist() == [[25.0, 20.0]]  # centre of the big blob
    ex, ey = steps[1].exclude[0].astype(int)
    assert spurious[ey, ex]  # then the spurious box (160 px) beats the small blob (81 px)
    assert steps[2].include[1].tolist() == [80.0, 12.0]


def test_error_driven_needs_the_model_and_next_click_none_when_perfect():
    target = _scene()
    with pytest.raises(StrategyError, match="predict"):
        create_strategy("error_driven").timesteps(target, 1, 0, strategy_rng(0))
    assert next_click(target.mask, target.mask, np.ones((H, W), bool)) is None


def test_bad_names_and_counts_are_user_errors():
    with pytest.raises(StrategyError, match="unknown strategy 'vst'"):
        create_strategy("vst")
    with pytest.raises(StrategyError, match="n_include"):
        create_strategy("random").select(_scene(), 0, 1, strategy_rng(0))
    with pytest.raises(StrategyError, match="INCLUDE,EXCLUDE"):
        PointCounts.parse("five")


def test_point_counts_follow_the_paper_table():
    counts = PointCounts()
    assert counts.for_category("polyp") == (14, 2)
    assert counts.for_category("Skin lesion") == (11, 2)
    assert counts.for_category("malignant") == (4, 1)
    assert counts.for_category("Cow") == (16, 4)
    assert counts.for_category("flower") == DEFAULT_COUNTS == (8, 2)
    assert PointCounts.parse("5,2").for_category("polyp") == (5, 2)
    assert PointCounts.parse("3").fixed == (3, 0)
    assert PointCounts.parse("paper").fixed is None
    human = PointCounts.parse("human")
    assert human.describe() == "human"
    assert human.for_object("polyp", Points.from_lists([[1, 1], [2, 2], [3, 3]], [[0, 0]])) == (3, 1)
    assert human.for_object("polyp", None) == (14, 2)
