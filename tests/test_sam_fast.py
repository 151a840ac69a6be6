"""Fast decoding and batch scoring against SamPredictor + segprompt.metrics.iou (tiny random-init SAM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from skimage import data as skdata

from segprompt.backends.sam import _batches, binary_mask_to_logits
from segprompt.backends.sam_fast import FastMaskDecoder, low_res_extent
from segprompt.errors import PromptError, UnsupportedPromptError
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
    best = tiny_sam.score_prompts(embedding, prompts, gt, multimask=multimask, ignore=ignore, exact=True, chunk_size=3)
    oracle = tiny_sam.score_prompts(
        embedding, prompts, gt, multimask=multimask, select="oracle", ignore=ignore, exact=True
    )
    fast = tiny_sam.score_prompts(embedding, prompts, gt, multimask=multimask, ignore=ignore)
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
    result = tiny_sam.score_prompts(embedding, prompts, gt, keep_logits=True, exact=True)
    for index, prompt in enumerate(prompts):
        _, scores, low_res = _reference(predictor, prompt, True)
        np.testing.assert_allclose(result.low_res_logits[index], low_res[np.argmax(scores)], atol=1e-5)
    # timestep 2: the previous logits as a mask prompt, scored in a batch
    follow_up = [
        Prompt(points=prompt.points, mask=MaskPrompt(result.low_res_logits[i], "logits")) for i, prompt in enumerate(prompts)
    ]
    again = tiny_sam.score_prompts(embedding, follow_up, gt, multimask=False, exact=True)
    for index, prompt in enumerate(follow_up):
        masks, _, _ = predictor.predict(
            point_coords=prompt.points.xy,
            point_labels=prompt.points.labels,
            mask_input=prompt.mask.data[None],
            multimask_output=False,
        )
        assert again.iou[index] == pytest.approx(iou(masks[0], gt), abs=1e-6)


@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask-prompt"])
def test_fast_decoder_matches_the_reference_decoder(setup, tiny_sam_model, tiny_sam, with_mask):
    image, embedding, _, gt, _ = setup
    mask = MaskPrompt(gt) if with_mask else None  # a mask prompt makes every layer's image tokens per-prompt
    prompts = [Prompt(points=Points([[20, 30], [60, 80]], [1, 0]), box=Box(10, 10, 150, 200), mask=mask)] * 2
    sparse, dense = tiny_sam._encode_prompts(prompts, embedding.image_hw)
    features = embedding.data["features"]
    decoder = FastMaskDecoder(tiny_sam_model)
    for multimask in (True, False):
        reference, ref_scores = tiny_sam.decode(embedding, **tiny_sam.prompt_tensors(prompts[0], embedding.image_hw), multimask=multimask)
        logits, scores = decoder.decode(features, sparse, dense, multimask)
        torch.testing.assert_close(logits, reference.expand_as(logits), atol=1e-5, rtol=0)
        torch.testing.assert_close(scores, ref_scores.expand_as(scores), atol=1e-6, rtol=0)
        cropped, _ = decoder.decode(features, sparse, dense, multimask, input_hw=embedding.data["input_hw"])
        rows, cols = low_res_extent(embedding.data["input_hw"])
        assert rows <= cropped.shape[2] < 256 or cols <= cropped.shape[3] < 256
        torch.testing.assert_close(cropped, logits[..., : cropped.shape[2], : cropped.shape[3]])
    assert decoder.context(features) is decoder.context(features)


def test_batches_group_by_shape_and_keep_order():
    one = Prompt(points=Points([[1, 1]], [1]))
    two = Prompt(points=Points([[1, 1], [2, 2]], [1, 0]))
    boxed = Prompt(points=Points([[1, 1]], [1]), box=Box(0, 0, 4, 4))
    prompts = [one, two, one, boxed, one, two]
    assert _batches(prompts, 2) == [[0, 2], [4], [1, 5], [3]]


def test_scoring_errors_name_the_prompt(setup, tiny_sam):
    image, embedding, _, gt, _ = setup
    good = Prompt(points=Points([[1, 1]], [1]))
    with pytest.raises(PromptError, match=r"prompts\[1\].*outside"):
        tiny_sam.score_prompts(embedding, [good, Prompt(points=Points([[1, image.shape[0] + 3]], [1]))], gt)
    with pytest.raises(UnsupportedPromptError, match=r"prompts\[0\].*text"):
        tiny_sam.score_prompts(embedding, [Prompt(text=Text("astronaut"))], gt)
    with pytest.raises(ValueError, match="gt_mask shape"):
        tiny_sam.score_prompts(embedding, [good], gt[:-1])
    with pytest.raises(ValueError, match="select"):
        tiny_sam.score_prompts(embedding, [good], gt, select="worst")
