"""Full-size random-init SAM (ViT-B) against SamPredictor: the tiny model's parity at the real size.

Marked ``slow`` (one to three minutes on CPU; left out by default, ``python -m pytest -m slow`` runs it):
the ViT-B encoder (12 blocks of width 768, windowed and global attention at
1024 x 1024) where the tiny SAM's has 2 blocks of width 64, and the decoder on
the features of a real-size encoder.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from skimage import data as skdata

from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.evaluation import score_prompts
from segprompt.metrics import iou
from segprompt.prompts import Box, Points, Prompt

pytestmark = pytest.mark.slow

IMAGE = skdata.astronaut()[64:448, 32:480]  # 384 x 448


@pytest.fixture(scope="module")
def vit_b():
    model = build_sam("vit_b", seed=0)
    segmenter = SamSegmenter(model=model)
    predictor = SamPredictor(model)
    predictor.set_image(IMAGE)
    return segmenter, segmenter.embed(IMAGE), predictor


def test_vit_b_embedding_and_predictions_equal_sam_predictor(vit_b):
    segmenter, embedding, predictor = vit_b
    assert torch.equal(embedding.features, predictor.features)
    height, width = IMAGE.shape[:2]
    xy = np.array([[0.4 * width, 0.3 * height], [0.7 * width, 0.8 * height]])
    box = Box(0.2 * width, 0.1 * height, 0.9 * width, 0.95 * height)
    cases = [
        (Prompt(points=Points(xy[:1], [1])), {"point_coords": xy[:1], "point_labels": np.array([1])}),
        (Prompt(points=Points(xy, [1, 0]), box=box), {"point_coords": xy, "point_labels": np.array([1, 0]), "box": box.as_array()}),
    ]
    for prompt, kwargs in cases:
        for multimask in (True, False):
            ours = segmenter.predict(embedding, prompt, multimask=multimask)
            masks, scores, low_res = predictor.predict(**kwargs, multimask_output=multimask)
            assert np.array_equal(ours.masks, masks) and np.array_equal(ours.scores, scores)
            assert np.array_equal(ours.low_res_logits, low_res)


def test_vit_b_batch_scoring_equals_the_predictor_loop(vit_b):
    segmenter, embedding, predictor = vit_b
    height, width = IMAGE.shape[:2]
    gt = IMAGE[..., 0] > 150
    rng = np.random.default_rng(1)
    prompts = [Prompt(points=Points(rng.uniform((0, 0), (width - 1, height - 1), (1 + k % 2, 2)), [1] * (1 + k % 2))) for k in range(6)]
    exact = score_prompts(segmenter, embedding, prompts, gt, exact=True, chunk_size=3)
    fast = score_prompts(segmenter, embedding, prompts, gt, chunk_size=3)
    for index, prompt in enumerate(prompts):
        masks, scores, _ = predictor.predict(prompt.points.xy, prompt.points.labels)
        best = int(np.argmax(scores))
        assert exact.selected[index] == best and exact.iou[index] == pytest.approx(iou(masks[best], gt), abs=1e-12)
    np.testing.assert_allclose(fast.iou, exact.iou, atol=1e-4)
