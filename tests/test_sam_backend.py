"""SamSegmenter against segment-anything's own SamPredictor on the same random-init weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from skimage import data as skdata

from segprompt.backends import create
from segprompt.backends.sam import SamSegmenter, binary_mask_to_logits
from segprompt.backends.sam_decoder import upsample_logits
from segprompt.backends.sam_arch import build_sam
from segprompt.errors import PromptError, UnsupportedPromptError
from segprompt.prompts import Box, MaskPrompt, Points, Prompt, Text

ASTRONAUT = skdata.astronaut()  # (512, 512, 3) uint8
IMAGES = {
    "landscape": ASTRONAUT[40:250, 30:410],  # 210 x 380
    "portrait": ASTRONAUT[30:410, 40:250],  # the rotated aspect, 380 x 210
}


@pytest.fixture(scope="module", params=sorted(IMAGES))
def setup(request, tiny_sam_model, tiny_sam):
    """``(image, our embedding, SamPredictor with the image set)``."""
    image = IMAGES[request.param]
    predictor = SamPredictor(tiny_sam_model)
    predictor.set_image(image)
    return image, tiny_sam.embed(image), predictor


def _prompts(height: int, width: int) -> list[tuple[str, Prompt, dict]]:
    """``(name, our prompt, the equivalent SamPredictor.predict kwargs)`` in image (x, y) pixels."""
    xy = np.array([[0.3 * width, 0.4 * height], [0.8 * width, 0.2 * height], [0.5 * width, 0.9 * height]])
    labels = np.array([1, 0, 1])
    box = Box(0.1 * width, 0.15 * height, 0.75 * width, 0.95 * height)
    logits = np.random.default_rng(1).normal(0.0, 4.0, (256, 256)).astype(np.float32)
    points_kw = {"point_coords": xy, "point_labels": labels}
    return [
        ("one point", Prompt(points=Points(xy[:1], labels[:1])), {"point_coords": xy[:1], "point_labels": labels[:1]}),
        ("points", Prompt(points=Points(xy, labels)), points_kw),
        ("box", Prompt(box=box), {"box": box.as_array()}),
        ("points+box", Prompt(points=Points(xy, labels), box=box), {**points_kw, "box": box.as_array()}),
        (
            "points+logits",
            Prompt(points=Points(xy, labels), mask=MaskPrompt(logits, "logits")),
            {**points_kw, "mask_input": logits[None]},
        ),
    ]


@pytest.mark.parametrize("multimask", [True, False])
def test_predict_equals_sam_predictor(setup, tiny_sam, multimask):
    image, embedding, predictor = setup
    assert torch.equal(embedding.features, predictor.features)
    for name, prompt, kwargs in _prompts(*image.shape[:2]):
        ours = tiny_sam.predict(embedding, prompt, multimask=multimask)
        masks, scores, low_res = predictor.predict(**kwargs, multimask_output=multimask)
        assert ours.masks.shape == (3 if multimask else 1, *image.shape[:2]), name
        assert np.array_equal(ours.masks, masks), name
        assert np.array_equal(ours.scores, scores), name
        assert np.array_equal(ours.low_res_logits, low_res), name
        # every prompt must give a non-trivial mask, or equality would prove little
        assert 0 < masks.sum() < masks.size, name


def test_predict_best_is_the_best_of_predict(setup, tiny_sam):
    image, embedding, _ = setup
    for name, prompt, _ in _prompts(*image.shape[:2])[1:3]:
        full = tiny_sam.predict(embedding, prompt)
        best = tiny_sam.predict_best(embedding, prompt, exact=True)
        assert best.masks.shape == (1, *image.shape[:2])
        assert np.array_equal(best.masks[0], full.best_mask), name
        # the fast decoder alone re-associates sums: equal up to pixels within rounding of 0
        fast = tiny_sam.predict_best(embedding, prompt)
        assert np.count_nonzero(fast.masks[0] != full.best_mask) <= 2, name
        np.testing.assert_allclose(fast.low_res_logits[0], full.low_res_logits[full.best], atol=1e-5)
        assert best.scores[0] == pytest.approx(full.scores.max(), abs=1e-6)
        np.testing.assert_allclose(best.low_res_logits[0], full.low_res_logits[full.best], atol=1e-5)


def test_embedding_layout(setup):
    image, embedding, _ = setup
    height, width = image.shape[:2]
    assert embedding.backend == "sam"
    assert embedding.image_hw == (height, width)
    assert embedding.features.shape == (1, 256, 64, 64)
    assert embedding.features.dtype == torch.float32
    long_side = max(height, width)
    expected = (int(height * 1024 / long_side + 0.5), int(width * 1024 / long_side + 0.5))
    assert embedding.input_hw == expected
    assert max(expected) == 1024


def test_binary_mask_prompt_is_converted_to_low_res_logits():
    mask = np.zeros((100, 200), bool)
    mask[:, :100] = True  # left half
    logits = binary_mask_to_logits(mask)
    assert logits.shape == (256, 256) and logits.dtype == np.float32
    # 200 wide -> 256 wide, 100 high -> 128 high; the left half maps to columns [0, 128)
    full = np.log(0.999 / 0.001)
    assert np.allclose(logits[:128, :128], full)
    assert np.allclose(logits[:128, 128:], -full)
    assert np.allclose(logits[128:, :], -full)  # padding counts as background


def test_binary_mask_prompt_equals_predictor_with_converted_logits(setup, tiny_sam):
    image, embedding, predictor = setup
    height, width = image.shape[:2]
    mask = np.zeros((height, width), bool)
    mask[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = True
    xy = np.array([[width / 2, height / 2]])
    prompt = Prompt(points=Points(xy, [1]), mask=MaskPrompt(mask))
    ours = tiny_sam.predict(embedding, prompt, multimask=False)
    masks, scores, _ = predictor.predict(
        point_coords=xy, point_labels=np.array([1]), mask_input=binary_mask_to_logits(mask)[None], multimask_output=False
    )
    assert np.array_equal(ours.masks, masks) and np.array_equal(ours.scores, scores)


@pytest.mark.parametrize("image_hw", [(210, 380), (380, 210), (37, 53), (1024, 768), (768, 1024), (1500, 123)])
def test_upsample_logits_equals_postprocess_masks(tiny_sam_model, image_hw):
    height, width = image_hw
    scale = 1024 / max(height, width)
    input_hw = (int(height * scale + 0.5), int(width * scale + 0.5))
    low_res = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    expected = tiny_sam_model.postprocess_masks(low_res, input_hw, image_hw)
    assert torch.equal(upsample_logits(low_res, input_hw, image_hw), expected)


def test_model_id_identifies_the_weights(tiny_sam_model, tmp_path):
    same = SamSegmenter(model=build_sam("tiny", seed=0))
    other = SamSegmenter(model=build_sam("tiny", seed=1))
    first = SamSegmenter(model=tiny_sam_model)
    assert first.model_id == same.model_id
    assert first.model_id != other.model_id
    assert first.model_id.startswith("tiny:state-")
    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam_model.state_dict(), path)
    from_file = SamSegmenter("tiny", checkpoint=path)
    from segprompt.checkpoints import file_sha256

    assert from_file.model_id == f"tiny:{file_sha256(path)[:16]}"
    for name, tensor in tiny_sam_model.state_dict().items():
        assert torch.equal(from_file.model.state_dict()[name], tensor), name


def test_created_by_registry_name(tiny_sam_model):
    segmenter = create("sam", model=tiny_sam_model)
    assert isinstance(segmenter, SamSegmenter)
    assert segmenter.accepts == {"points", "box", "mask"}


def test_errors_name_the_problem(setup, tiny_sam):
    image, embedding, _ = setup
    height, width = image.shape[:2]
    with pytest.raises(UnsupportedPromptError, match="text"):
        tiny_sam.predict(embedding, Prompt(text=Text("polyp")))
    with pytest.raises(PromptError, match="outside"):
        tiny_sam.predict(embedding, Prompt(points=Points([[width + 5, 1]], [1])))
    with pytest.raises(PromptError, match="outside"):
        tiny_sam.predict_best(embedding, Prompt(box=Box(0, 0, width + 10, height)))
    other = SamSegmenter(model=build_sam("tiny", seed=1))
    with pytest.raises(ValueError, match="model"):
        other.predict(embedding, Prompt(points=Points([[1, 1]], [1])))
    with pytest.raises(ValueError, match="model"):
        other.predict_best(embedding, Prompt(points=Points([[1, 1]], [1])))
