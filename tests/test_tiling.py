"""Tiled embeddings: the grid, prompt routing and stitching (pure), and TiledSegmenter on real backends.

Exactness is checked against the reference the rules promise: a prompt inside one tile's window gives what the
wrapped backend answers on that window cropped out of the image (random-init tiny SAM, bit for bit); stitching a
pattern cut into windows gives the pattern back; a mask crossing tile borders (classical, deterministic) comes out
as one piece equal to the drawn object.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import ellipse

from segprompt.backends import create_from_options
from segprompt.backends.tiled import TiledEmbedding, TiledSegmenter
from segprompt.errors import PromptError, SegpromptError, UnsupportedPromptError
from segprompt.metrics import iou
from segprompt.prompts import Box, MaskPrompt, Points, Prompt
from segprompt.tiling import (
    MIN_TILE_SIDE,
    Region,
    ownership,
    prompt_extent,
    prompt_in_window,
    route,
    stitch,
    tile_grid,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RNG = np.random.default_rng(7)
#: A textured (200, 300, 3) image: tiles of 128 with a halo of 32 make a 2 x 3 grid of 100 x 100 cores.
TEXTURE = (RNG.random((200, 300, 3)) * 255).astype(np.uint8)


def _clicks(*xy, labels=None) -> Prompt:
    labels = [1] * len(xy) if labels is None else labels
    return Prompt(points=Points(np.array(xy, float), np.array(labels)))


# -- the grid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image_hw, tile, halo, grid_hw",
    [((4000, 4000), 1024, 128, (4, 4)), ((300, 400), 128, 32, (3, 4)), ((1025, 90), 1024, 0, (2, 1)), ((50, 60), 64, 8, (1, 1))],
)
def test_cores_partition_the_image_in_near_equal_parts_and_windows_add_the_halo(image_hw, tile, halo, grid_hw):
    grid = tile_grid(image_hw, tile, halo)
    assert grid.grid_hw == grid_hw and len(grid) == grid_hw[0] * grid_hw[1]
    cover = np.zeros(image_hw, np.int32)
    for index, t in enumerate(grid.tiles):
        assert t.index == index and t.position == divmod(index, grid_hw[1])
        cover[t.core.slices] += 1
        assert max(t.core.shape) <= tile
        height, width = image_hw
        assert t.window == Region(max(0, t.core.row0 - halo), max(0, t.core.col0 - halo),
                                  min(height, t.core.row1 + halo), min(width, t.core.col1 + halo))
    assert (cover == 1).all()  # every pixel in exactly one core
    rows = {t.core.shape[0] for t in grid.tiles}
    cols = {t.core.shape[1] for t in grid.tiles}
    assert max(rows) - min(rows) <= 1 and max(cols) - min(cols) <= 1  # no sliver at the border


def test_4000_px_with_1024_tiles_is_16_cores_of_1000():
    grid = tile_grid((4000, 4000), (1024, 1024), (128, 128))
    assert {t.core.shape for t in grid.tiles} == {(1000, 1000)}
    assert grid.tiles[5].window == Region(872, 872, 2128, 2128)
    assert grid.tiles[5].interior_edges((4000, 4000)) == (True, True, True, True)
    assert grid.tiles[0].interior_edges((4000, 4000)) == (False, False, True, True)


@pytest.mark.parametrize(
    "tile, halo, message",
    [(MIN_TILE_SIDE - 1, 0, f"at least {MIN_TILE_SIDE} px"), (64, -1, "halo: must be >= 0"),
     ("64", 8, "tile_shape: expected one integer or two"), (64, (1, 2, 3), "halo: expected one integer or two"),
     (64.0, 8, "tile_shape: expected")],
)
def test_bad_tilings_are_refused_naming_the_value(tile, halo, message):
    with pytest.raises(SegpromptError, match=message):
        tile_grid((100, 100), tile, halo)


# -- routing ----------------------------------------------------------------------------------------


def test_a_prompt_inside_one_window_goes_to_the_tile_whose_core_centre_is_nearest():
    grid = tile_grid((300, 400), 128, 32)  # cores of 100 x 100, windows grown by 32
    # (x=105, y=50): windows of tiles 0 and 1 hold it; core centres at col 50 and 150, the click at 105.5
    assert route(grid, prompt_extent(_clicks((105, 50)))) == (1,)
    assert route(grid, prompt_extent(_clicks((94, 50)))) == (0,)
    # A box over the core border but inside tile 1's window: one tile.
    assert route(grid, prompt_extent(Prompt(box=Box(90, 10, 118, 40)))) == (1,)
    # Exclude points say where the object is not: they do not widen the extent.
    prompt = _clicks((150, 50), (390, 290), labels=[1, 0])
    assert prompt_extent(prompt) == Region(50, 150, 51, 151)
    assert route(grid, prompt_extent(prompt)) == (1,)


def test_a_prompt_no_window_holds_goes_to_every_core_it_touches():
    grid = tile_grid((300, 400), 128, 32)
    assert route(grid, prompt_extent(Prompt(box=Box(40.5, 20, 260, 60)))) == (0, 1, 2)
    # Two clicks far apart: the cores their box touches, including those between them.
    assert route(grid, prompt_extent(_clicks((10, 10), (250, 150)))) == (0, 1, 2, 4, 5, 6)
    mask = np.zeros((300, 400), bool)
    mask[120:140, 20:380] = True
    assert route(grid, prompt_extent(Prompt(mask=MaskPrompt(mask)))) == (4, 5, 6, 7)


def test_prompt_in_window_shifts_clips_and_crops_to_the_window():
    window = Region(68, 68, 232, 232)
    mask = np.zeros((300, 400), bool)
    mask[100:110, 300:310] = True  # outside the window
    mask[70:80, 70:75] = True
    prompt = Prompt(points=Points(np.array([[100.0, 100.0], [10.0, 10.0], [231.5, 70.0]]), np.array([1, 1, 0])),
                    box=Box(50, 90, 300, 120), mask=MaskPrompt(mask))
    local = prompt_in_window(prompt, window)
    np.testing.assert_array_equal(local.points.xy, [[32.0, 32.0], [163.5, 2.0]])
    np.testing.assert_array_equal(local.points.labels, [1, 0])
    assert local.box == Box(0, 22, 164, 52)
    assert local.mask.data.shape == (164, 164) and local.mask.data.sum() == 50 and local.mask.data[2:12, 2:7].all()
    # A sliver of the box inside the window is widened to one pixel; nothing saying where: None.
    assert prompt_in_window(Prompt(box=Box(231.75, 100, 260, 120)), window).box == Box(163, 32, 164, 52)
    assert prompt_in_window(_clicks((10, 10)), window) is None
    assert prompt_in_window(_clicks((100, 100), labels=[0]), window) is None


# -- stitching ----------------------------------------------------------------------------------------


def _pattern(image_hw: tuple[int, int]) -> np.ndarray:
    """A mask crossing every tile border: a diagonal stripe, a ring and a checkerboard patch."""
    rows, cols = np.mgrid[: image_hw[0], : image_hw[1]]
    stripe = np.abs(rows - 0.7 * cols) < 6
    ring = np.abs(np.hypot(rows - 150, cols - 200) - 80) < 4
    checker = ((rows // 3 + cols // 3) % 2 == 0) & (rows > 90) & (rows < 110) & (cols > 50) & (cols < 350)
    return stripe | ring | checker


def test_stitching_windows_of_one_pattern_gives_the_pattern_back_without_a_seam():
    grid = tile_grid((300, 400), 128, 32)
    truth = _pattern((300, 400))
    answers = {t.index: np.stack([truth[t.window.slices], ~truth[t.window.slices]]) for t in grid.tiles}
    masks, counts = stitch(grid, answers)
    np.testing.assert_array_equal(masks[0], truth)
    np.testing.assert_array_equal(masks[1], ~truth)
    for t in grid.tiles:  # each tile contributes exactly its core
        assert counts[t.index].tolist() == [int(truth[t.core.slices].sum()), int((~truth[t.core.slices]).sum())]


def test_each_pixel_comes_from_the_nearest_answering_core():
    grid = tile_grid((300, 400), 128, 32)
    region, owner = ownership(grid, [0, 1])
    assert region == Region(0, 0, 132, 232)
    assert (owner[:100, :100] == 0).all() and (owner[:100, 100:200] == 1).all()
    assert (owner[:, 200:] == 1).all() and (owner[100:, :100] == 0).all()  # the outer halo: the nearest core
    # Disagreeing tiles meet exactly at the core border.
    masks, _ = stitch(grid, {0: np.ones((1, *grid.tiles[0].window.shape), bool),
                             1: np.zeros((1, *grid.tiles[1].window.shape), bool)})
    assert masks[0, :132, :100].all() and not masks[0, :, 100:].any() and not masks[0, 132:].any()


# -- TiledSegmenter on a random-init SAM --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiled_sam(tiny_sam):
    return TiledSegmenter(tiny_sam, tile_shape=128, halo=32)


@pytest.fixture(scope="module")
def texture_embedding(tiled_sam):
    return tiled_sam.embed(TEXTURE)


@functools.lru_cache(maxsize=None)
def _window_embedding(sam, window: Region):
    return sam.embed(TEXTURE[window.slices])


def _on_window(sam, window: Region, prompt: Prompt, multimask: bool):
    """The backend's own answer on the window cropped out of TEXTURE, pasted back into the image."""
    local = prompt_in_window(prompt, window)
    prediction = sam.predict(_window_embedding(sam, window), local, multimask)
    masks = np.zeros((len(prediction.scores), *TEXTURE.shape[:2]), bool)
    masks[(slice(None), *window.slices)] = prediction.masks
    return masks, prediction.scores


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize(
    "prompt",
    [_clicks((105, 50)), Prompt(box=Box(210, 120, 290, 190)),
     Prompt(points=Points(np.array([[250.0, 150.0], [230.0, 170.0]]), np.array([1, 0])), box=Box(215, 125, 295, 195))],
    ids=["click", "box", "box+points"],
)
def test_a_prompt_inside_one_tile_equals_segmenting_the_cropped_tile(tiny_sam, tiled_sam, texture_embedding, prompt, multimask):
    grid = texture_embedding.grid
    (index,) = route(grid, prompt_extent(prompt))
    expected_masks, expected_scores = _on_window(tiny_sam, grid.tiles[index].window, prompt, multimask)
    prediction = tiled_sam.predict(texture_embedding, prompt, multimask)
    np.testing.assert_array_equal(prediction.masks, expected_masks)
    np.testing.assert_array_equal(prediction.scores, expected_scores)
    assert prediction.low_res_logits is None


def test_a_box_spanning_tiles_stitches_each_tiles_answer_on_its_core(tiny_sam, tiled_sam, texture_embedding):
    grid = texture_embedding.grid
    prompt = Prompt(box=Box(120, 60, 290, 140))
    indices = route(grid, prompt_extent(prompt))
    assert indices == (1, 2, 4, 5)
    prediction = tiled_sam.predict(texture_embedding, prompt, multimask=False)
    region, owner = ownership(grid, indices)
    owners = np.full(TEXTURE.shape[:2], -1)
    owners[region.slices] = owner
    assert (owners[:68, :68] == -1).all() and (owners[100:, 100:200] == 4).all()  # tile 0 does not answer
    weighted, pixels = 0.0, 0
    for index in indices:
        masks, scores = _on_window(tiny_sam, grid.tiles[index].window, prompt, False)
        owned = owners == index
        np.testing.assert_array_equal(prediction.masks[0][owned], masks[0][owned])
        weighted += float(scores[0]) * int(masks[0][owned].sum())
        pixels += int(masks[0][owned].sum())
    assert not prediction.masks[0][owners == -1].any()
    assert prediction.scores[0] == pytest.approx(weighted / pixels, rel=1e-6)


def test_an_image_within_one_tile_is_answered_like_the_untiled_backend(tiny_sam):
    image = TEXTURE[:120, :100]
    tiled = TiledSegmenter(tiny_sam, tile_shape=128, halo=32)
    embedding = tiled.embed(image)
    assert len(embedding.grid) == 1 and embedding.grid.tiles[0].window == Region(0, 0, 120, 100)
    prompt = _clicks((40, 60))
    expected = tiny_sam.predict(tiny_sam.embed(image), prompt)
    prediction = tiled.predict(embedding, prompt)
    np.testing.assert_array_equal(prediction.masks, expected.masks)
    np.testing.assert_array_equal(prediction.scores, expected.scores)


def test_tiled_and_untiled_embeddings_are_never_mixed(tiny_sam, tiled_sam, texture_embedding):
    assert tiled_sam.name == "sam" and tiled_sam.model_id == f"{tiny_sam.model_id} | tiles 128x128 halo 32x32"
    assert isinstance(texture_embedding, TiledEmbedding) and texture_embedding.model_id == tiled_sam.model_id
    with pytest.raises(ValueError, match="embedding was made by"):
        tiny_sam.predict(texture_embedding, _clicks((10, 10)))
    with pytest.raises(ValueError, match="embedding was made by"):
        tiled_sam.predict(tiny_sam.embed(TEXTURE[:64, :64]), _clicks((10, 10)))
    with pytest.raises(ValueError, match="embedding was made by"):
        TiledSegmenter(tiny_sam, 128, 16).predict(texture_embedding, _clicks((10, 10)))


def test_prompts_a_tiled_backend_cannot_route_are_refused(tiled_sam, texture_embedding):
    with pytest.raises(UnsupportedPromptError, match="binary mask; low-resolution logits belong to one tile"):
        tiled_sam.predict(texture_embedding, Prompt(mask=MaskPrompt(np.zeros((256, 256), np.float32), "logits")))
    with pytest.raises(PromptError, match="outside the 300x200"):
        tiled_sam.predict(texture_embedding, _clicks((300, 10)))
    with pytest.raises(PromptError, match="only exclude points"):
        tiled_sam.predict(texture_embedding, _clicks((10, 10), labels=[0]))


def test_backends_without_point_box_or_mask_prompts_cannot_be_tiled(tiny_sam, tiny_clipseg):
    with pytest.raises(SegpromptError, match="backend 'clipseg' cannot be tiled: it takes reference, text prompts"):
        TiledSegmenter(tiny_clipseg, 256)
    with pytest.raises(SegpromptError, match="already tiled"):
        TiledSegmenter(TiledSegmenter(tiny_sam, 256), 256)
    with pytest.raises(SegpromptError, match="cannot be tiled"):
        create_from_options("clipseg", tile_shape=256)
    with pytest.raises(SegpromptError, match="halo: give a tile shape too"):
        create_from_options("classical", halo=16)
    tiled = create_from_options("classical", tile_shape=[256, 200], halo=[16, 8])
    assert isinstance(tiled, TiledSegmenter) and (tiled.tile_shape, tiled.halo) == ((256, 200), (16, 8))


# -- no seam: a deterministic backend on an object across tile borders --------------------------------


def test_an_object_across_four_tiles_is_stitched_in_one_piece():
    rng = np.random.default_rng(3)
    grey = rng.normal(60, 10, (320, 320))
    truth = np.zeros((320, 320), bool)
    truth[ellipse(160, 165, 70, 110, shape=truth.shape)] = True  # crosses both core borders (row 160, col 160)
    grey[truth] += 110
    image = np.clip(grey, 0, 255).astype(np.uint8)
    tiled = create_from_options("classical", tile_shape=160, halo=32)
    embedding = tiled.embed(image)
    assert len(embedding.grid) == 4
    prediction = tiled.predict(embedding, Prompt(box=Box(45, 80, 285, 241)), multimask=False)
    mask = prediction.best_mask
    assert ndi.label(mask)[1] == 1
    assert iou(mask, truth) > 0.97
    # Across each core border, the rows / columns on both sides agree with the object: no gap, no step.
    for side in (slice(158, 162),):
        np.testing.assert_array_equal(mask[side], truth[side])
        np.testing.assert_array_equal(mask[:, side], truth[:, side])
    assert prediction.method == "grabcut (box prior)"
