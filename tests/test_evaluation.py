"""Scoring many prompts against ground truth (segprompt.evaluation) vs SamPredictor + segprompt.metrics.iou (tiny random-init SAM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from skimage import data as skdata

from segprompt.backends import create
from segprompt.backends.base import prompt_groups
from segprompt.backends.sam import binary_mask_to_logits
from segprompt.errors import PromptError, UnsupportedPromptError
from segprompt.evaluation import count_true, score_prompts, select_mask, selection_settings
from segprompt.metrics import iou
from segprompt.prompts import Box, MaskPrompt, Points, Prompt, Text

ASTRONAUT = skdata.astronaut()
IMAGES = {"landscape": ASTRONAUT[40:250, 30:410], "portrait": ASTRONAUT[30:410, 40:250]}


@pytest.fixture(scope="module", params=sorted(IMAGES))
def setup(request, tiny_sam_model, tiny_sam):
    image = IMAGES[request.param]
    predictor = SamPredictor(tiny_sam_model)
    predictor.set_image(image)
    # a real object-like target: the bright pixels of the red channel, plus an ignore band
    gt = image[..., 0] > 150
    ignore = np.zeros(gt.shape, bool)
    ignore[:, :7] = True
    return image, tiny_sam.embed(image), predictor, gt, ignore


def _mixed_prompts(height: int, width: int, gt: np.ndarray) -> list[Prompt]:
    """Prompts of every batchable shape, interleaved so groups are not contiguous."""
    rng = np.random.default_rng(7)
    prompts = []
    for index in range(9):
        n_points = 1 + index % 3
        xy = np.stack([rng.uniform(0, width - 1, n_points), rng.uniform(0, height - 1, n_points)], axis=1)
        labels = np.ones(n_points, int)
        labels[1:] = rng.integers(0, 2, n_points - 1)
        box = Box(0.1 * width, 0.1 * height, 0.8 * width, 0.9 * height) if index % 4 == 3 else None
        mask = MaskPrompt(gt) if index % 5 == 4 else None
        prompts.append(Prompt(points=Points(xy, labels), box=box, mask=mask))
    prompts.append(Prompt(box=Box(5, 5, width - 5, height - 5)))
    return prompts


def _reference(predictor: SamPredictor, prompt: Prompt, multimask: bool):
    kwargs = {}
    if prompt.points is not None:
        kwargs.update(point_coords=prompt.points.xy, point_labels=prompt.points.labels)
    if prompt.box is not None:
        kwargs["box"] = prompt.box.as_array()
    if prompt.mask is not None:
        kwargs["mask_input"] = binary_mask_to_logits(prompt.mask.data)[None]
    return predictor.predict(**kwargs, multimask_output=multimask)


@pytest.mark.parametrize("multimask", [True, False])
def test_scores_equal_a_sam_predictor_loop(setup, tiny_sam, multimask):
    image, embedding, predictor, gt, ignore = setup
    prompts = _mixed_prompts(*image.shape[:2], gt)
    best = score_prompts(tiny_sam, embedding, prompts, gt, multimask=multimask, ignore=ignore, exact=True, chunk_size=3)
    oracle = score_prompts(
        tiny_sam, embedding, prompts, gt, multimask=multimask, select="oracle", ignore=ignore, exact=True
    )
    fast = score_prompts(tiny_sam, embedding, prompts, gt, multimask=multimask, ignore=ignore)
    assert fast.n_exact == 0 and best.n_exact > 0  # random-init logits are all near zero
    # a pixel within float rounding of 0 may flip: 1 / (union of ~30000 pixels)
    np.testing.assert_allclose(fast.iou, best.iou, atol=1e-4)
    k = 3 if multimask else 1
    assert best.iou.shape == (len(prompts),) and best.scores.shape == (len(prompts), k)
    for index, prompt in enumerate(prompts):
        masks, scores, _ = _reference(predictor, prompt, multimask)
        ious = [iou(mask, gt, ignore) for mask in masks]
        chosen = int(np.argmax(scores))
        assert best.selected[index] == chosen, index
        assert best.iou[index] == pytest.approx(ious[chosen], abs=1e-6), index
        assert oracle.selected[index] == int(np.argmax(ious)), index
        assert oracle.iou[index] == pytest.approx(max(ious), abs=1e-6), index
        np.testing.assert_allclose(best.scores[index], scores, atol=1e-6)
    assert 0.0 < best.iou.min() and best.iou.max() < 1.0, "the target must discriminate between prompts"


def test_kept_logits_feed_the_next_timestep(setup, tiny_sam):
    image, embedding, predictor, gt, _ = setup
    prompts = _mixed_prompts(*image.shape[:2], gt)[:3]
    result = score_prompts(tiny_sam, embedding, prompts, gt, keep_logits=True, exact=True)
    for index, prompt in enumerate(prompts):
        _, scores, low_res = _reference(predictor, prompt, True)
        np.testing.assert_allclose(result.low_res_logits[index], low_res[np.argmax(scores)], atol=1e-5)
    # timestep 2: the previous logits as a mask prompt, scored in a batch
    follow_up = [
        Prompt(points=prompt.points, mask=MaskPrompt(result.low_res_logits[i], "logits")) for i, prompt in enumerate(prompts)
    ]
    again = score_prompts(tiny_sam, embedding, follow_up, gt, multimask=False, exact=True)
    for index, prompt in enumerate(follow_up):
        masks, _, _ = predictor.predict(
            point_coords=prompt.points.xy,
            point_labels=prompt.points.labels,
            mask_input=prompt.mask.data[None],
            multimask_output=False,
        )
        assert again.iou[index] == pytest.approx(iou(masks[0], gt), abs=1e-6)


def test_first_scores_masks_0_even_when_another_candidate_scores_higher(setup, tiny_sam):
    """PointPrompt's reference scores masks[0] of the multimask output, whatever SAM's predicted IoUs say."""
    image, embedding, predictor, gt, ignore = setup
    height, width = image.shape[:2]
    rng = np.random.default_rng(3)
    clicks = [Prompt(points=Points([[rng.uniform(0, width - 1), rng.uniform(0, height - 1)]], [1])) for _ in range(12)]
    chosen = None
    for prompt in clicks:  # a click whose best-scored candidate is not masks[0] and scores differently
        masks, scores, _ = _reference(predictor, prompt, True)
        ious = [iou(mask, gt, ignore) for mask in masks]
        if int(np.argmax(scores)) != 0 and abs(ious[0] - ious[int(np.argmax(scores))]) > 1e-3:
            chosen = (prompt, ious, int(np.argmax(scores)))
            break
    assert chosen is not None, "no click where masks[0] is not the best-scored candidate"
    prompt, ious, best_index = chosen
    first = score_prompts(tiny_sam, embedding, [prompt], gt, select="first", ignore=ignore, exact=True)
    best = score_prompts(tiny_sam, embedding, [prompt], gt, select="best", ignore=ignore, exact=True)
    assert first.selected[0] == 0 and first.iou[0] == pytest.approx(ious[0], abs=1e-6)
    assert best.selected[0] == best_index and best.iou[0] == pytest.approx(ious[best_index], abs=1e-6)
    assert first.iou[0] != pytest.approx(best.iou[0], abs=1e-4)
    assert first.selected_scores[0] < best.selected_scores[0]
    # the interactive path picks the same candidates
    mask, _ = select_mask(tiny_sam, embedding, prompt, select="first")
    assert iou(mask, gt, ignore) == pytest.approx(ious[0], abs=1e-3)


def test_selection_words():
    assert selection_settings("single") == (False, "best")
    assert selection_settings("first") == (True, "first")
    with pytest.raises(ValueError, match="single"):
        selection_settings("worst")


def test_backends_without_batches_are_scored_by_predict(tiny_sam):
    """The classical backend declares no batch capability: one predict per prompt, same IoU convention."""
    classical = create("classical")
    image = IMAGES["landscape"]
    gt = image[..., 0] > 150
    embedding = classical.embed(image)
    prompts = [Prompt(box=Box(20, 20, 200, 150)), Prompt(points=Points([[100, 80], [300, 40]], [1, 0]))]
    for select in ("best", "first", "oracle"):
        scored = score_prompts(classical, embedding, prompts, gt, select=select, keep_logits=True)
        for index, prompt in enumerate(prompts):
            answer = classical.predict(embedding, prompt)
            ious = [iou(mask, gt) for mask in answer.masks]
            expected = {"best": answer.best, "first": 0, "oracle": int(np.argmax(ious))}[select]
            assert scored.selected[index] == expected
            assert scored.iou[index] == ious[expected]
            np.testing.assert_array_equal(scored.scores[index, : len(answer.scores)], answer.scores)
        assert scored.low_res_logits is None  # classical has no logits
    with pytest.raises(PromptError, match=r"prompts\[1\].*outside"):
        score_prompts(classical, embedding, [prompts[0], Prompt(points=Points([[1, 5000]], [1]))], gt)


@pytest.mark.parametrize("shape", [(3, 7, 11), (2, 1, 64, 64), (5, 37, 53)])
def test_count_true_counts_every_pixel(shape):
    masks = torch.from_numpy(np.random.default_rng(0).random(shape) > 0.4)
    np.testing.assert_array_equal(count_true(masks).numpy(), masks.flatten(-2).sum(-1).numpy())
    full = torch.ones(shape, dtype=torch.bool)
    assert (count_true(full) == shape[-1] * shape[-2]).all()


def test_batches_group_by_shape_and_keep_order():
    one = Prompt(points=Points([[1, 1]], [1]))
    two = Prompt(points=Points([[1, 1], [2, 2]], [1, 0]))
    boxed = Prompt(points=Points([[1, 1]], [1]), box=Box(0, 0, 4, 4))
    prompts = [one, two, one, boxed, one, two]
    assert prompt_groups(prompts, 2) == [[0, 2], [4], [1, 5], [3]]
    masked = Prompt(points=Points([[1, 1]], [1]), mask=MaskPrompt(np.ones((4, 4), bool)))
    # SAM takes a mask per prompt; the transformers SAM family one per image, so each masked prompt goes alone
    assert prompt_groups([masked, one, masked, masked], 4) == [[0, 2, 3], [1]]
    assert prompt_groups([masked, one, masked, masked], 4, shared_mask=True) == [[0], [1], [2], [3]]


def test_scoring_errors_name_the_prompt(setup, tiny_sam):
    image, embedding, _, gt, _ = setup
    good = Prompt(points=Points([[1, 1]], [1]))
    with pytest.raises(PromptError, match=r"prompts\[1\].*outside"):
        score_prompts(tiny_sam, embedding, [good, Prompt(points=Points([[1, image.shape[0] + 3]], [1]))], gt)
    with pytest.raises(UnsupportedPromptError, match=r"prompts\[0\].*text"):
        score_prompts(tiny_sam, embedding, [Prompt(text=Text("astronaut"))], gt)
    with pytest.raises(ValueError, match="gt_mask shape"):
        score_prompts(tiny_sam, embedding, [good], gt[:-1])
    with pytest.raises(ValueError, match="select"):
        score_prompts(tiny_sam, embedding, [good], gt, select="worst")
