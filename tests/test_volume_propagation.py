"""Propagation through a volume: where it stops, both directions, several objects, corrections, per-slice embeddings.

Geometry is checked on the synthetic ellipsoid (:func:`segprompt.volume.synthetic.ellipsoid_volume`,
exact ground truth) with the zero-weight classical backend; the SAM-family path (logits passed on) against
the backend's own answer to the projected prompt, on a random-init tiny SAM.
"""

from __future__ import annotations

import numpy as np
import pytest

from segprompt.backends import create, create_from_options
from segprompt.errors import SegpromptError, UnsupportedPromptError
from segprompt.metrics import iou
from segprompt.prompts import Box, MaskPrompt, Points, Prompt
from segprompt.volume.embeddings import SliceEmbeddings, plain_embed
from segprompt.volume.projection import PROJECTIONS, grown_box, points_from_mask, project
from segprompt.volume.propagation import NEVER_STOP, ProjectionPropagator, SliceResult, StopRule
from segprompt.volume.reader import SliceImages, Volume
from segprompt.volume.session import VolumeSession
from segprompt.volume.synthetic import Ellipsoid, ellipsoid_volume, shifted_stack

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (40, 96, 112)
#: IoU every slice of the ellipsoid must reach where its cross-section is at least MIN_SECTION of the largest.
MIN_IOU = 0.8
MIN_SECTION = 0.25


class CountingEmbed:
    """``embed_image`` that counts which slices were embedded (by pixel digest)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, segmenter, image, progress):
        self.calls += 1
        return plain_embed(segmenter, image, progress)


@pytest.fixture(scope="module")
def ellipsoid():
    return ellipsoid_volume(SHAPE)


@pytest.fixture(scope="module")
def classical():
    return create("classical")


def classical_session(volume: np.ndarray, classical, stop: StopRule = StopRule(), embed=None) -> VolumeSession:
    embeddings = SliceEmbeddings(classical, SliceImages(Volume(volume, "ZYX")), embed_image=embed)
    return VolumeSession(ProjectionPropagator(classical, embeddings), stop)


def slice_ious(session: VolumeSession, truth: np.ndarray, label: int = 1) -> np.ndarray:
    return np.array([iou(session.plane(z) == label, truth[z]) for z in range(truth.shape[0])])


def test_classical_propagation_stops_where_the_ellipsoid_ends(ellipsoid, classical):
    """Prompted with a box on the middle slice, both directions: every slice with a cross-section of at least
    25 % of the largest is found with IoU >= 0.8, and nothing is written outside the object."""
    volume, truth, shape = ellipsoid
    session = classical_session(volume, classical)
    middle = SHAPE[0] // 2
    session.prompt(1, middle, Prompt(box=Box.from_mask(truth[middle])))
    runs = session.propagate(middle)

    inside = list(shape.slices(SHAPE[0]))
    assert inside[0] > 0 and inside[-1] < SHAPE[0] - 1  # the object really ends inside the volume
    written = session.objects[1].slices
    assert set(written) <= set(inside), f"masks outside the object: {sorted(set(written) - set(inside))}"
    areas = truth.sum(axis=(1, 2))
    large = [z for z in inside if areas[z] >= MIN_SECTION * areas.max()]
    ious = slice_ious(session, truth)
    assert set(large) <= set(written)
    assert ious[large].min() >= MIN_IOU, dict(zip(large, ious[large].round(3)))
    up, down = runs
    assert (up.direction, down.direction) == ("up", "down")
    assert up.slices == tuple(range(middle + 1, up.stopped_at)) and down.slices == tuple(range(middle - 1, down.stopped_at, -1))
    assert up.stopped_at <= inside[-1] + 1 and down.stopped_at >= inside[0] - 1  # stopped at the tips, not past them
    assert "not confirmed by its box" in up.reason and up.stopped_at == max(written) + 1


def test_each_direction_alone_writes_only_its_side(ellipsoid, classical):
    volume, truth, _ = ellipsoid
    middle = SHAPE[0] // 2
    for direction, side in (("up", 1), ("down", -1)):
        session = classical_session(volume, classical)
        session.prompt(1, middle, Prompt(box=Box.from_mask(truth[middle])))
        [run] = session.propagate(middle, direction=direction)
        assert run.direction == direction and len(run.slices) >= 8
        assert all((z - middle) * side >= 0 for z in session.objects[1].slices)


def test_a_correction_re_propagates_from_its_slice_and_anchors_bound_runs(ellipsoid, classical):
    volume, truth, _ = ellipsoid
    session = classical_session(volume, classical)
    session.prompt(1, 20, Prompt(box=Box.from_mask(truth[20])))
    session.propagate(20)
    before = {z: session.mask(1, z) for z in session.objects[1].slices}

    # A bad correction on slice 26 (a box on the object's left half): the slices above follow it ...
    left = truth[26].copy()
    left[:, int(np.nonzero(truth[26])[1].mean()):] = False
    session.prompt(1, 26, Prompt(box=Box.from_mask(left)))
    [up] = session.propagate(26, labels=[1], direction="up")
    assert up.start == 26 and up.slices and up.slices[0] == 27
    assert all(not np.array_equal(session.mask(1, z), before[z]) for z in up.slices[:3])
    assert all(np.array_equal(session.mask(1, z), before[z]) for z in range(14, 26))  # below stayed

    # ... and a good one on 26 replaces it; going down from 30 stops before the anchor on 26.
    session.prompt(1, 26, Prompt(box=Box.from_mask(truth[26])))
    [up] = session.propagate(26, labels=[1], direction="up")
    assert iou(session.mask(1, 28), truth[28]) >= MIN_IOU
    session.prompt(1, 30, Prompt(box=Box.from_mask(truth[30])))
    [down] = session.propagate(30, direction="down")
    assert down.slices == (29, 28, 27) and down.stopped_at is None and down.reason == "reached object 1's prompt on slice 26"
    assert set(session.objects[1].anchors) == {20, 26, 30}


def test_a_run_that_now_stops_earlier_leaves_no_stale_masks(ellipsoid, classical):
    volume, truth, _ = ellipsoid
    session = classical_session(volume, classical)
    session.prompt(1, 20, Prompt(box=Box.from_mask(truth[20])))
    session.propagate(20, direction="up")
    reached = max(session.objects[1].slices)
    assert reached > 28
    session.stop = StopRule(min_score=0.99)  # the next run stops at once
    [up] = session.propagate(20, direction="up")
    assert up.slices == () and "score" in up.reason
    assert session.objects[1].slices == [20]


def test_several_objects_advance_together_and_each_slice_is_embedded_once(classical):
    shape = (24, 80, 120)
    left = Ellipsoid(centre=(11.5, 40.0, 30.0), radii=(9.0, 18.0, 20.0), drift_yx=(0.3, 0.0))
    right = Ellipsoid(centre=(11.5, 40.0, 88.0), radii=(7.0, 15.0, 18.0), drift_yx=(-0.3, 0.2))
    volume, truth_left, _ = ellipsoid_volume(shape, left, seed=1)
    truth_right = np.stack([right.mask(z, shape[1:]) for z in range(shape[0])])
    volume = np.maximum(volume, np.where(truth_right, volume.max(), 0)).astype(np.uint8)  # paint the second one in
    counter = CountingEmbed()
    session = classical_session(volume, classical, embed=counter)
    session.prompt(1, 11, Prompt(box=Box.from_mask(truth_left[11])))
    session.prompt(2, 11, Prompt(box=Box.from_mask(truth_right[11])))
    runs = session.propagate(11)
    assert {(r.label, r.direction) for r in runs} == {(1, "up"), (1, "down"), (2, "up"), (2, "down")}
    visited = {11} | {z for r in runs for z in r.slices} | {r.stopped_at for r in runs if r.stopped_at is not None}
    assert counter.calls == len(visited)  # both objects shared each slice's embedding
    for label, truth in ((1, truth_left), (2, truth_right)):
        assert set(session.objects[label].slices) <= set(np.flatnonzero(truth.any(axis=(1, 2))))
        assert slice_ious(session, truth, label)[11] >= MIN_IOU
    plane = session.plane(11)
    assert set(np.unique(plane)) == {0, 1, 2}


def test_stop_rules_name_the_reason():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    previous = SliceResult(mask, 1.0)
    rule = StopRule(min_area=4, min_score=0.5, min_iou=0.6, min_confirmation=0.5)
    assert rule.reason(SliceResult(mask, 0.9, confirmation=0.9), previous) is None
    assert rule.reason(SliceResult(mask, 0.9, "fallback: the mask prompt unchanged"), previous).startswith(
        "nothing found (the backend fell back to the mask prompt unchanged)"
    )
    assert rule.reason(SliceResult(np.zeros_like(mask), 0.9), previous) == "the object vanished (0 px < 4)"
    assert rule.reason(SliceResult(mask, 0.2), previous) == "score 0.200 < 0.5"
    shifted = np.roll(mask, 3, axis=1)
    assert rule.reason(SliceResult(shifted, 0.9), previous).startswith("IoU 0.333 with the previous slice < 0.6")
    assert rule.reason(SliceResult(mask, 0.9, confirmation=0.1), previous).startswith("not confirmed by its box (IoU 0.100")
    assert NEVER_STOP.reason(SliceResult(shifted, -5.0, confirmation=0.0), previous) is None


def test_projection_derives_box_points_and_passes_logits():
    mask = np.zeros((40, 50), bool)
    mask[10:20, 5:15] = True  # the larger component
    mask[30:34, 40:44] = True
    assert grown_box(mask, 0.0) == Box(5, 10, 44, 34)
    assert grown_box(mask, 0.1) == Box(1, 7, 48, 37)  # 4 / 3 px per side, clipped to the 50 x 40 image
    points = points_from_mask(mask, max_points=2)
    np.testing.assert_array_equal(points.include, [[9.0, 14.0], [41.0, 31.0]])  # each component's most interior pixel
    assert len(points.exclude) == 1 and not mask[int(points.exclude[0, 1]), int(points.exclude[0, 0])]
    logits = np.full((256, 256), -3.0, np.float32)
    prompt = project(mask, logits, PROJECTIONS["mask"])
    assert prompt.mask == MaskPrompt(logits, kind="logits") and prompt.box is not None and prompt.points is None
    assert project(mask, None, PROJECTIONS["points_and_mask"]).mask == MaskPrompt(mask)
    single = project(mask, None, PROJECTIONS["single_point"])
    assert single.kinds() == {"points"} and len(single.points) == 1


@pytest.mark.parametrize("backend", ["sam", "sam2"])
def test_sam_family_propagation_prompts_each_slice_with_the_previous_logits(backend, tiny_sam, ellipsoid):
    """Random-init weights say nothing about quality; this checks the chain: slice k + 1 is the backend's answer
    to the previous slice's low-resolution logits (in its own frame: SAM's padded, SAM 2's square) plus its grown
    box, exactly."""
    if backend == "sam":
        segmenter = tiny_sam
    else:
        from segprompt.backends.sam2 import Sam2Segmenter
        from segprompt.testing import random_sam2

        segmenter = Sam2Segmenter(pretrained=random_sam2("tiny", seed=0))
    volume = ellipsoid[0][14:18, ::2, ::2]
    embeddings = SliceEmbeddings(segmenter, SliceImages(Volume(volume, "ZYX")), embed_image=plain_embed)
    session = VolumeSession(ProjectionPropagator(segmenter, embeddings), NEVER_STOP)
    first = session.prompt(1, 1, Prompt(points=Points.from_lists(include=[(28, 24)])))
    assert first.logits is not None and first.logits.shape == (256, 256)
    [up, down] = session.propagate(1)
    assert up.slices == (2, 3) and down.slices == (0,)
    previous = first
    for z in (2, 3):
        prompt = project(previous.mask, previous.logits, PROJECTIONS["mask"])
        expected = segmenter.predict(embeddings.get(z), prompt, multimask=False)
        np.testing.assert_array_equal(session.mask(1, z), expected.best_mask)
        previous = SliceResult.from_prediction(expected)


def test_projections_a_backend_cannot_take_are_refused(classical, tiny_clipseg):
    images = SliceImages(Volume(np.zeros((3, 16, 16), np.uint8), "ZYX"))
    with pytest.raises(UnsupportedPromptError, match="backend 'clipseg' does not accept box, mask prompts"):
        ProjectionPropagator(tiny_clipseg, SliceEmbeddings(tiny_clipseg, images))
    with pytest.raises(SegpromptError, match="unknown projection 'lasso'"):
        ProjectionPropagator(classical, SliceEmbeddings(classical, images), "lasso")
    session = VolumeSession(ProjectionPropagator(classical, SliceEmbeddings(classical, images)))
    with pytest.raises(SegpromptError, match="slice 3 is out of range; the volume has 3 slices"):
        session.prompt(1, 3, Prompt(box=Box(1, 1, 5, 5)))
    with pytest.raises(SegpromptError, match="no object 7"):
        session.propagate(0, labels=[7])
    with pytest.raises(SegpromptError, match="direction must be one of both, up, down"):
        session.propagate(0, direction="sideways")


def test_slice_embeddings_are_made_once_on_demand_and_cached_on_disk(tiny_sam, tmp_path):
    from segprompt.cache import EmbeddingCache

    volume = np.random.default_rng(0).integers(0, 255, (4, 24, 32), dtype=np.uint8)
    counter = CountingEmbed()
    embeddings = SliceEmbeddings(tiny_sam, SliceImages(Volume(volume, "ZYX")), embed_image=counter, in_memory=2)
    first = embeddings.get(3)
    assert embeddings.get(3) is first and counter.calls == 1
    messages = []
    embeddings.precompute(progress=lambda done, total, message: messages.append((done, total, message)))
    assert counter.calls == 4 and embeddings.embedded == frozenset(range(4))
    assert messages[0] == (0, 3, "embedding slice 0 (1/3)") and messages[-1] == (3, 3, "4 slices embedded")
    embeddings.get(0)  # left memory (2 kept): embedded again
    assert counter.calls == 5

    class CountingCache(EmbeddingCache):
        stored = 0

        def _store(self, *args):
            CountingCache.stored += 1
            super()._store(*args)

    for _ in range(2):  # a second session over the same volume (another object, a re-opened file) reads the disk
        SliceEmbeddings(tiny_sam, SliceImages(Volume(volume, "ZYX")), CountingCache(tmp_path / "cache").embed).precompute()
    assert CountingCache.stored == 4


def test_large_slices_tile_through_the_slice_embeddings_and_the_disk_cache(tiny_sam, tmp_path):
    """A tiled SAM's slices become tiled embeddings through the default ``embed_image``; a second pass over the
    volume reads every tile of every slice from the disk cache, and a propagated slice is the tiled backend's
    answer to the projected prompt."""
    from segprompt.backends.tiled import TiledEmbedding, TiledSegmenter
    from segprompt.cache import EmbeddingCache
    from segprompt.volume.embeddings import default_embed_image
    from test_cache import encoder_calls

    volume = np.random.default_rng(1).integers(0, 255, (2, 100, 120), dtype=np.uint8)
    tiled = TiledSegmenter(tiny_sam, tile_shape=64, halo=16)  # 2 x 2 tiles per slice
    cache = EmbeddingCache(tmp_path / "cache")
    with encoder_calls(tiny_sam) as calls:
        embeddings = SliceEmbeddings(tiled, SliceImages(Volume(volume, "ZYX")), default_embed_image(tiled, cache))
        embeddings.precompute()
        assert len(calls) == 2 * 4 and isinstance(embeddings.get(1), TiledEmbedding)
        again = SliceEmbeddings(tiled, SliceImages(Volume(volume, "ZYX")), default_embed_image(tiled, cache))
        again.precompute()
        assert len(calls) == 2 * 4, "a re-opened volume must not run the encoder for any tile"
    session = VolumeSession(ProjectionPropagator(tiled, again, confirm=False), NEVER_STOP)
    first = session.prompt(1, 0, Prompt(box=Box(20, 30, 100, 80)))  # spans all four tiles
    assert first.logits is None  # a tiled answer has no low-resolution frame: the mask itself is passed on
    session.propagate(0, direction="up")
    expected = tiled.predict(again.get(1), project(first.mask, None, PROJECTIONS["mask"]), multimask=False)
    np.testing.assert_array_equal(session.mask(1, 1), expected.best_mask)


def test_classical_propagates_through_tiled_slices_like_untiled(classical):
    """Slices of 240 x 320 in tiles of 128 with a halo of 64: the ellipsoid (about 60 x 72 px) and GrabCut's
    context around its box fit in one window, so each slice is found as without tiles."""
    shape = (16, 240, 320)
    volume, truth, _ = ellipsoid_volume(shape, Ellipsoid(centre=(7.5, 110, 150), radii=(5.6, 30, 36), drift_yx=(0.4, 0.6)))
    middle = 7
    sessions = []
    for segmenter in (classical, create_from_options("classical", tile_shape=128, halo=64)):
        session = classical_session(volume, segmenter)
        session.prompt(1, middle, Prompt(box=Box.from_mask(truth[middle])))
        session.propagate(middle)
        sessions.append(session)
    untiled, tiled = sessions
    assert tiled.objects[1].slices == untiled.objects[1].slices and len(tiled.objects[1].slices) >= 8
    for z in tiled.objects[1].slices:
        assert iou(tiled.plane(z) == 1, untiled.plane(z) == 1) >= 0.95, z


@pytest.mark.shared_data
def test_classical_follows_a_real_nucleus_through_a_shifted_stack(shared_data, classical):
    """dsb2018_nuclei image 4 (fluorescence, 256 x 256) stacked as 21 windows moving by a seeded random walk of
    up to 2 px per slice; its median-size nucleus that stays inside every window, prompted by its box on the
    middle slice: IoU >= 0.9 on every slice (measured 0.94-0.97)."""
    import csv

    from segprompt.io import read_image, read_mask

    root = shared_data("dsb2018_nuclei")
    row = list(csv.DictReader(open(root / "index.csv")))[3]
    image, labels = read_image(root / "images" / f"{row['id']}.png"), read_mask(root / "masks" / f"{row['id']}.png")
    stack, truth, shifts = shifted_stack(image, labels, n_slices=21, max_step=2, seed=0)
    assert np.abs(np.diff(shifts, axis=0)).max() <= 2
    inside = [i for i in np.unique(labels) if i and all((t == i).any() for t in truth)
              and not any((t[[0, -1]] == i).any() or (t[:, [0, -1]] == i).any() for t in truth)]
    sizes = [(labels == i).sum() for i in inside]
    target = inside[int(np.argsort(sizes)[len(sizes) // 2])]
    session = VolumeSession(ProjectionPropagator(classical, SliceEmbeddings(classical, SliceImages(Volume(stack, "ZYXC")))))
    session.prompt(1, 10, Prompt(box=Box.from_mask(truth[10] == target)))
    runs = session.propagate(10)
    assert all(run.reason == "reached the end of the volume" for run in runs)
    ious = slice_ious(session, truth == target)
    assert ious.min() >= 0.9, ious.round(3)
