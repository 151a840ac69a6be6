"""PerSAM / PerSAM-F on a random-weight tiny SAM and on hand-built feature maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torchvision.ops import sigmoid_focal_loss

from segprompt.backends import backend_names, create
from segprompt.backends.frame import ModelFrame
from segprompt.backends.persam import (
    PerSamFSegmenter,
    PerSamSegmenter,
    Personalisation,
    attention_bias,
    cosine_similarity_grid,
    dice_focal_loss,
    fit_mask_weights,
    target_embedding,
)
from segprompt.backends.sam import SamEmbedding
from segprompt.cache import EmbeddingCache
from segprompt.errors import UnsupportedPromptError
from segprompt.prompts import Box, Prompt, Text, VisualReference

TARGET_HW = (96, 160)  # non-square: SAM input 614 x 1024, 39 x 64 feature cells
REFERENCE_HW = (120, 80)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> EmbeddingCache:
    return EmbeddingCache(tmp_path_factory.mktemp("persam_cache"))


@pytest.fixture(scope="module")
def reference() -> VisualReference:
    image = np.random.default_rng(1).integers(0, 256, (*REFERENCE_HW, 3), dtype=np.uint8)
    mask = np.zeros(REFERENCE_HW, bool)
    mask[30:90, 20:60] = True
    image[mask] = (200, 40, 40)
    return VisualReference(image, mask)


@pytest.fixture(scope="module")
def persam(tiny_sam, cache) -> PerSamSegmenter:
    return PerSamSegmenter(sam=tiny_sam, cache=cache)


@pytest.fixture(scope="module")
def target_embedding_(persam) -> SamEmbedding:
    image = np.random.default_rng(2).integers(0, 256, (*TARGET_HW, 3), dtype=np.uint8)
    image[20:70, 100:140] = (200, 40, 40)
    return persam.embed(image)


def _embedding_with(features: torch.Tensor, image_hw: tuple[int, int], input_hw: tuple[int, int]) -> SamEmbedding:
    return SamEmbedding(
        backend="sam",
        model_id="hand-built",
        image_hw=image_hw,
        image=np.zeros((*image_hw, 3), np.uint8),
        features=features,
        input_hw=input_hw,
    )


#: A 64 x 128 image in SAM's padded frame: 512 x 1024, one feature cell is 2 x 2 image pixels.
SMALL_FRAME = ModelFrame((64, 128), (512, 1024), 1024)


def test_registry_names():
    assert {"persam", "persam-f"} <= set(backend_names())


def test_target_embedding_is_the_mean_feature_over_covered_cells():
    features = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    # A 64 x 128 image becomes 512 x 1024: one feature cell is 2 x 2 image pixels.
    mask = np.zeros((64, 128), bool)
    mask[0:4, 2:6] = True  # cells rows 0-1, cols 1-2
    expected = features[0, :, 0:2, 1:3].mean(dim=(1, 2))
    assert torch.allclose(target_embedding(features, mask, SMALL_FRAME), expected, atol=1e-6)
    coverage = SMALL_FRAME.mask_fraction(mask, 64)
    assert coverage.shape == (64, 64)
    assert int((coverage >= 0.5).sum()) == 4


def test_target_embedding_of_a_mask_smaller_than_a_cell_uses_the_best_covered_cell():
    features = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = np.zeros((64, 128), bool)
    mask[10, 21] = True  # a quarter of cell (5, 10)
    assert torch.allclose(target_embedding(features, mask, SMALL_FRAME), features[0, :, 5, 10], atol=1e-6)


def test_location_prior_lies_at_the_similarity_maximum_and_minimum(persam):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(1, 256, 64, 64, generator=generator)
    target = torch.randn(256, generator=generator)
    plus, minus = (10, 20), (30, 50)  # (row, col) feature cells inside the 39 x 64 image part
    features[0, :, plus[0], plus[1]] = 3 * target
    features[0, :, minus[0], minus[1]] = -3 * target
    input_hw = (614, 1024)
    assert ModelFrame.padded(TARGET_HW).grid_cells(64) == (39, 64)

    grid = cosine_similarity_grid(features, target)
    assert grid[plus].item() == pytest.approx(1.0, abs=1e-5)
    assert grid[minus].item() == pytest.approx(-1.0, abs=1e-5)

    similarity, points = persam.locate(_embedding_with(features, TARGET_HW, input_hw), target)
    assert similarity.shape == TARGET_HW
    assert points.labels.tolist() == [1, 0]
    (x_pos, y_pos), (x_neg, y_neg) = points.xy.astype(int)
    assert similarity[y_pos, x_pos] == similarity.max()
    assert similarity[y_neg, x_neg] == similarity.min()
    # Back to the feature grid: the pixel centre in SAM's 1024 frame, divided by the 16-pixel cell.
    scale = 1024 / 160
    for (x, y), cell in (((x_pos, y_pos), plus), ((x_neg, y_neg), minus)):
        assert (math.floor((y + 0.5) * scale / 16), math.floor((x + 0.5) * scale / 16)) == cell


def test_attention_bias_is_the_standardised_sigmoid_inside_the_image_and_zero_on_padding():
    grid = torch.zeros(64, 64)
    grid[:2, :3] = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    bias = attention_bias(grid, (2, 3))
    assert bias.shape == (1, 1, 1, 4096)
    values = np.arange(6.0)
    expected = 1 / (1 + np.exp(-(values - values.mean()) / values.std(ddof=1)))
    grid_bias = bias.reshape(64, 64).numpy()
    np.testing.assert_allclose(grid_bias[:2, :3].ravel(), expected, rtol=1e-6)
    assert np.count_nonzero(grid_bias) == 6


def test_guidance_changes_the_decoding_and_leaves_sam_unchanged(persam, tiny_sam, target_embedding_):
    prompt = Prompt(points=_points())
    plain, _, _ = tiny_sam.decode(target_embedding_, [prompt], multimask=False)
    guidance = persam.guidance(target_embedding_, torch.randn(256, generator=torch.Generator().manual_seed(7)))
    guided, _, _ = tiny_sam.decode(target_embedding_, [prompt], multimask=False, guidance=guidance)
    assert not torch.allclose(plain, guided)
    transformer = tiny_sam.model.mask_decoder.transformer
    assert all(type(layer) is TwoWayAttentionBlock for layer in transformer.layers)
    assert all(type(layer.cross_attn_token_to_image) is Attention for layer in transformer.layers)
    assert type(transformer.final_attn_token_to_image) is Attention
    again, _, _ = tiny_sam.decode(target_embedding_, [prompt], multimask=False)
    assert torch.equal(plain, again)


def _points():
    from segprompt.prompts import Points

    return Points.from_lists([(120, 40)], [(5, 5)])


def test_cascade_runs_three_stages_on_non_square_images(persam, reference, target_embedding_, monkeypatch):
    prompts: list[Prompt] = []
    original = persam.sam.predict

    def recording_predict(embedding, prompt, multimask=True):
        prompts.append(prompt)
        return original(embedding, prompt, multimask)

    monkeypatch.setattr(persam.sam, "predict", recording_predict)
    trace = persam.run(target_embedding_, persam.personalise(reference))

    assert trace.similarity.shape == TARGET_HW
    assert len(trace.stages) == 3
    first, second, third = trace.stages
    assert first.masks.shape == (1, *TARGET_HW)
    assert second.masks.shape == third.masks.shape == (3, *TARGET_HW)
    # Stage 2 refines stage 1's logits; stage 3 adds the box of stage 2's best mask.
    assert [sorted(p.kinds()) for p in prompts] == [["mask", "points"], ["box", "mask", "points"]]
    np.testing.assert_array_equal(prompts[0].mask.data, first.low_res_logits[0])
    np.testing.assert_array_equal(prompts[1].mask.data, second.low_res_logits[second.best])
    assert prompts[1].box == Box.from_mask(second.masks[second.best])
    assert all(p.points == trace.points for p in prompts)
    x, y = trace.points.xy.T
    assert ((0 <= x) & (x < TARGET_HW[1]) & (0 <= y) & (y < TARGET_HW[0])).all()


def test_predict_answers_reference_prompts_and_rejects_text(persam, reference, target_embedding_):
    prompt = Prompt(reference=reference)
    many = persam.predict(target_embedding_, prompt)
    one = persam.predict(target_embedding_, prompt, multimask=False)
    assert many.masks.shape == (3, *TARGET_HW) and many.low_res_logits.shape == (3, 256, 256)
    np.testing.assert_array_equal(one.masks[0], many.best_mask)
    with pytest.raises(UnsupportedPromptError, match="'persam' does not accept text"):
        persam.predict(target_embedding_, Prompt(text=Text("cat")))


def test_reference_embedding_goes_through_the_cache(persam, reference, cache):
    persam.personalise(reference)
    assert len(list(cache.root.rglob("*.pt"))) == 1
    assert persam.personalise(reference) is persam.personalise(reference)


def test_dice_focal_loss_and_gradient_equal_torch_autograd():
    generator = torch.Generator().manual_seed(8)
    logits = (6 * torch.randn(40, 30, generator=generator, dtype=torch.float64)).requires_grad_()
    target = (torch.rand(40, 30, generator=generator, dtype=torch.float64) > 0.6).double()
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    expected = dice + sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0, reduction="mean")
    expected.backward()
    loss, gradient = dice_focal_loss(logits.detach().numpy().ravel(), target.numpy().ravel())
    assert loss == pytest.approx(float(expected), rel=1e-12)
    np.testing.assert_allclose(gradient, logits.grad.numpy().ravel(), rtol=1e-9, atol=1e-15)


def _hand_loss(logits: np.ndarray, target: np.ndarray) -> float:
    p = 1 / (1 + np.exp(-logits))
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    cross_entropy = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = 0.25 * target + 0.75 * (1 - target)
    return float(dice + (alpha_t * cross_entropy * (1 - p_t) ** 2).mean())


def test_fit_mask_weights_learns_the_blend_towards_the_right_candidate():
    yy, xx = np.mgrid[:32, :32]
    target = ((yy - 16) ** 2 + (xx - 16) ** 2 < 81).astype(np.float32)
    right = 8 * (2 * target - 1)
    candidates = np.stack([np.full_like(target, -4.0), right, -0.5 * right]).astype(np.float32)

    weights, losses = fit_mask_weights(torch.from_numpy(candidates), torch.from_numpy(target), iterations=1000)

    assert losses.shape == (1000,)
    assert losses[0] == pytest.approx(_hand_loss(candidates.mean(axis=0), target), rel=1e-5)
    assert losses[-1] < 0.5 * losses[0]
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert weights[1] > 1 / 3 + 0.2 and weights[1] == weights.max()
    blended = np.tensordot(weights, candidates, axes=1)
    assert _hand_loss(blended, target) == pytest.approx(float(losses[-1]), rel=0.05)


def test_persam_f_fits_two_weights_once_per_reference(tiny_sam, cache, reference, target_embedding_):
    persam_f = create("persam-f", sam=tiny_sam, cache=cache, fit_iterations=30)
    assert isinstance(persam_f, PerSamFSegmenter) and persam_f.fine_tune
    personalisation = persam_f.personalise(reference)
    assert personalisation.mask_weights.shape == (3,) and personalisation.losses.shape == (30,)
    assert personalisation.mask_weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert persam_f.personalise(reference) is personalisation
    trace = persam_f.run(target_embedding_, personalisation)
    assert trace.stages[0].masks.shape == (1, *TARGET_HW)  # the blend of three
    assert trace.stages[-1].masks.shape == (3, *TARGET_HW)


def test_personalisation_of_a_hand_given_target_matches_locate(persam, target_embedding_):
    target = target_embedding_.features[0, :, 5, 7].clone()
    trace = persam.run(target_embedding_, Personalisation(target))
    similarity, points = persam.locate(target_embedding_, target)
    assert trace.points == points
    np.testing.assert_array_equal(trace.similarity, similarity)
