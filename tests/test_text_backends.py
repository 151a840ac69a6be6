"""Text and visual-reference backends on tiny random-init models built here.

The weights are random, so the masks mean nothing; what is checked is real:
the shapes and frames of every output, that each backend's pre- and
post-processing is the model's own processor's, that the split into
``embed`` + ``predict`` gives what one full forward pass gives, and the
boxes of hand-made detector outputs in original-image pixels.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from segprompt.backends import backend_names, create
from segprompt.backends.clipseg import highlight_reference
from segprompt.backends.detector_sam import Detections
from segprompt.cache import EmbeddingCache
from segprompt.errors import CheckpointError, SegpromptError, UnsupportedPromptError
from segprompt.hub import load_pretrained, local_model_dir
from segprompt.prompts import Box, Points, Prompt, Text, VisualReference
from segprompt.testing import tiny_clipseg_dir, tiny_grounding_dino_dir, tiny_owlv2_dir, tiny_seggpt_dir
from segprompt.text_tokenizer import clip_tokenizer

HEIGHT, WIDTH = 48, 80  # non-square on purpose: frames and aspect ratios must survive


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from skimage import data, transform

    astronaut = transform.resize(data.astronaut(), (HEIGHT, WIDTH), anti_aliasing=True)
    return (astronaut * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def reference() -> VisualReference:
    from skimage import data

    coffee = data.coffee()[::8, ::8]  # (50, 75, 3)
    mask = np.zeros(coffee.shape[:2], bool)
    mask[10:30, 20:50] = True
    return VisualReference(coffee, mask)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "clipseg": tiny_clipseg_dir(root / "clipseg"),
        "owlv2": tiny_owlv2_dir(root / "owlv2"),
        "gdino": tiny_grounding_dino_dir(root / "gdino"),
        "seggpt": tiny_seggpt_dir(root / "seggpt"),
    }


@pytest.fixture(scope="module")
def clipseg(model_dirs):
    return create("clipseg", model_dir=model_dirs["clipseg"])


@pytest.fixture(scope="module")
def owlv2(model_dirs, tiny_sam):
    return create("owlv2-sam", model_dir=model_dirs["owlv2"], sam=tiny_sam, box_threshold=0.0)


@pytest.fixture(scope="module")
def gdino(model_dirs, tiny_sam):
    return create("grounding-dino-sam", model_dir=model_dirs["gdino"], sam=tiny_sam, box_threshold=0.0)


@pytest.fixture(scope="module")
def seggpt(model_dirs):
    return create("seggpt", model_dir=model_dirs["seggpt"])


@pytest.fixture(scope="module")
def owlv2_embedding(owlv2, image):
    return owlv2.embed(image)


@pytest.fixture(scope="module")
def gdino_embedding(gdino, image):
    return gdino.embed(image)


# --- offline CLIP tokenizer --------------------------------------------------------------------


def test_clip_tokenizer_has_openai_clip_ids(tmp_path):
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = clip_tokenizer(tmp_path / "tok")
    assert len(tokenizer) == 49408
    # Ids of OpenAI's CLIP tokenizer: <start> a photo of a cat <end>.
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    reference = SimpleTokenizer()
    for phrase in ("Polyp in the colon, 3 cells!", "naïve café", "skin-lesion"):
        assert tokenizer(phrase).input_ids[1:-1] == reference.encode(phrase)
    from transformers import CLIPTokenizer

    reloaded = CLIPTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert reloaded("a photo of a cat").input_ids == tokenizer("a photo of a cat").input_ids


# --- loading -----------------------------------------------------------------------------------


def test_offline_without_a_copy_names_the_folder_to_provide(tmp_path, monkeypatch):
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    expected = local_model_dir("CIDAS/clipseg-rd64-refined")
    assert expected.name == "CIDAS--clipseg-rd64-refined"
    with pytest.raises(CheckpointError, match="not available offline") as info:
        load_pretrained(CLIPSegForImageSegmentation, CLIPSegProcessor, "CIDAS/clipseg-rd64-refined")
    assert str(expected) in str(info.value) and f"`hf download CIDAS/clipseg-rd64-refined --local-dir {expected}`" in str(info.value)
    with pytest.raises(CheckpointError, match="not a model folder"):
        create("clipseg", model_dir=tmp_path)


def test_local_copy_in_the_cache_is_used(model_dirs, monkeypatch):
    import shutil

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = local_model_dir("CIDAS/clipseg-rd64-refined")
    shutil.copytree(model_dirs["clipseg"], target)
    segmenter = create("clipseg")
    assert segmenter.model_id == "CIDAS--clipseg-rd64-refined"
    assert segmenter.model.config.projection_dim == 16


def test_registry_knows_the_backends():
    assert {"clipseg", "owlv2-sam", "grounding-dino-sam", "seggpt"} <= set(backend_names())


# --- CLIPSeg -----------------------------------------------------------------------------------


def test_clipseg_text_matches_the_full_model(clipseg, image):
    embedding = clipseg.embed(image)
    layers = len(clipseg.model.extract_layers)
    assert embedding.activations.shape == (layers, 1, 1 + 6 * 6, 32)  # 96 / 16 = 6 patches a side
    prompt = Prompt(text=Text("a photo of a person"))
    prediction = clipseg.predict(embedding, prompt)

    inputs = clipseg.processor(text=["a photo of a person"], images=[image], return_tensors="pt")
    assert torch.equal(clipseg._pixel_values(image), inputs["pixel_values"])
    with torch.no_grad():
        logits = clipseg.model(**inputs).logits.reshape(1, 1, 96, 96)
    expected = torch.sigmoid(
        torch.nn.functional.interpolate(logits, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
    )[0, 0].numpy()

    assert prediction.masks.shape == (1, HEIGHT, WIDTH) and prediction.masks.dtype == bool
    assert prediction.probabilities.dtype == np.float32
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(prediction.masks[0], prediction.probabilities >= 0.5)
    inside = prediction.probabilities[prediction.masks[0]]
    assert prediction.scores[0] == pytest.approx(inside.mean() if inside.size else 0.0, rel=1e-5)
    np.testing.assert_array_equal(clipseg.probabilities(embedding, prompt), prediction.probabilities)


def test_clipseg_visual_prompt_matches_conditional_pixel_values(clipseg, image, reference):
    embedding = clipseg.embed(image)
    prediction = clipseg.predict(embedding, Prompt(reference=reference))
    visual = highlight_reference(reference)
    inputs = clipseg.processor(images=[image], visual_prompt=[visual], return_tensors="pt")
    with torch.no_grad():
        logits = clipseg.model(**inputs).logits.reshape(96, 96)
    torch.testing.assert_close(clipseg.logits(embedding, Prompt(reference=reference)), logits, atol=1e-5, rtol=1e-5)
    assert prediction.probabilities.shape == (HEIGHT, WIDTH)

    both = clipseg.conditional_embedding(Prompt(text=Text("coffee"), reference=reference))
    text = clipseg.conditional_embedding(Prompt(text=Text("coffee")))
    visual_only = clipseg.conditional_embedding(Prompt(reference=reference))
    torch.testing.assert_close(both, (text + visual_only) / 2)


def test_highlight_reference_crops_blurs_and_darkens():
    image = np.full((60, 100, 3), 200, np.uint8)
    mask = np.zeros((60, 100), bool)
    mask[20:40, 30:50] = True  # 20 x 20 box centred at (x=40, y=30)
    out = highlight_reference(VisualReference(image, mask), background=0.1, context=0.25)
    # Square of side 20 * (1 + 2 * 0.25) = 30 around the centre: rows 15..45, columns 25..55.
    assert out.shape == (30, 30, 3)
    assert (out[5:25, 5:25] == 200).all()  # the object keeps its pixels
    assert (out[:3, :3] == 20).all()  # far background: 10 % of a flat 200 (blur of a constant is the constant)


def test_clipseg_rejects_other_prompts_and_bad_threshold(clipseg, image, model_dirs):
    embedding = clipseg.embed(image)
    with pytest.raises(UnsupportedPromptError, match="does not accept points"):
        clipseg.predict(embedding, Prompt(points=Points.from_lists([(3, 4)])))
    with pytest.raises(SegpromptError, match="threshold"):
        create("clipseg", model_dir=model_dirs["clipseg"], threshold=1.5)


def test_clipseg_embedding_survives_the_cache(clipseg, image, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    first = cache.embed(clipseg, image)
    second = cache.embed(clipseg, image)
    prompt = Prompt(text=Text("a face"))
    np.testing.assert_array_equal(clipseg.probabilities(first, prompt), clipseg.probabilities(second, prompt))


# --- OWLv2 + SAM -------------------------------------------------------------------------------


def test_owlv2_text_detections_match_the_processor(owlv2, owlv2_embedding, image):
    assert owlv2_embedding.part("detector").feature_map.shape == (1, 4, 4, 32)
    assert owlv2_embedding.part("sam").features.shape == (1, 256, 64, 64)
    assert owlv2_embedding.part("detector").image_hw == (HEIGHT, WIDTH)
    mine = owlv2.detect_from(owlv2_embedding.part("detector"), Prompt(text=Text("a face")))

    inputs = owlv2.processor(text=[["a face"]], images=[image], return_tensors="pt")
    with torch.no_grad():
        outputs = owlv2.model(**inputs)
    expected = owlv2.processor.image_processor.post_process_object_detection(
        outputs, threshold=0.0, target_sizes=[(HEIGHT, WIDTH)]
    )[0]
    order = np.argsort(-expected["scores"].numpy(), kind="stable")
    np.testing.assert_allclose(mine.scores, expected["scores"].numpy()[order], atol=1e-5)
    np.testing.assert_allclose(mine.boxes, expected["boxes"].numpy()[order], atol=1e-3)


def _fake_owl_heads(owlv2, monkeypatch, boxes_cxcywh: list[list[float]], logits: list[float]) -> None:
    """Make OWLv2's heads answer fixed boxes (normalised to the padded square) and class logits."""
    boxes = torch.tensor([boxes_cxcywh], dtype=torch.float32)
    scores = torch.tensor(logits, dtype=torch.float32).reshape(1, -1, 1)
    monkeypatch.setattr(owlv2.model, "box_predictor", lambda features, feature_map: boxes)
    monkeypatch.setattr(owlv2.model, "class_predictor", lambda features, query=None: (scores, torch.zeros(1, len(logits), 32)))


def test_owlv2_boxes_land_in_original_pixels(owlv2, owlv2_embedding, monkeypatch, tiny_sam):
    # Padded square side = max(48, 80) = 80: centre (0.5, 0.25), size (0.25, 0.2) -> x 30..50, y 12..28.
    # The second box overlaps the first (IoU 0.6 > 0.3) and is suppressed; the third is low-scoring.
    _fake_owl_heads(
        owlv2,
        monkeypatch,
        [[0.5, 0.25, 0.25, 0.2], [0.5, 0.27, 0.25, 0.2], [0.1, 0.1, 0.1, 0.1]],
        [3.0, 2.0, -3.0],
    )
    prompt = Prompt(text=Text("a face"))
    detections = owlv2.detect(owlv2_embedding, prompt)
    np.testing.assert_allclose(detections.boxes[0], [30, 12, 50, 28], atol=1e-4)
    np.testing.assert_allclose(detections.scores, 1 / (1 + np.exp([-3.0, 3.0])), rtol=1e-5)
    assert len(detections) == 2

    prediction = owlv2.predict(owlv2_embedding, prompt)
    assert prediction.masks.shape == (2, HEIGHT, WIDTH) and prediction.low_res_logits.shape == (2, 256, 256)
    sam_embedding = tiny_sam.embed(owlv2_embedding.image)
    direct = tiny_sam.predict(sam_embedding, Prompt(box=Box(30, 12, 50, 28)), multimask=False)
    np.testing.assert_array_equal(prediction.masks[0], direct.masks[0])
    assert prediction.scores[0] == pytest.approx(detections.scores[0] * direct.scores[0], rel=1e-5)
    assert len(owlv2.predict(owlv2_embedding, prompt, multimask=False).scores) == 1


def test_owlv2_reference_query_is_the_box_over_the_mask(owlv2, reference, monkeypatch):
    # Reference (50 x 75): mask box x 20..50, y 10..30; square side 75.
    target = [35 / 75, 20 / 75, 30 / 75, 20 / 75]
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], target, [0.5, 0.3, 0.6, 0.5]]])
    class_embeds = torch.arange(3 * 4, dtype=torch.float32).reshape(1, 3, 4)
    monkeypatch.setattr(owlv2.model, "box_predictor", lambda features, feature_map: boxes)
    monkeypatch.setattr(owlv2.model, "class_predictor", lambda features, query=None: (None, class_embeds))
    torch.testing.assert_close(owlv2.reference_query(reference), class_embeds[:, 1:2])


def test_owlv2_without_detections_gives_one_empty_mask(owlv2, owlv2_embedding, monkeypatch, reference):
    _fake_owl_heads(owlv2, monkeypatch, [[0.5, 0.5, 0.2, 0.2]], [-5.0])
    owlv2.box_threshold = 0.5
    try:
        prediction = owlv2.predict(owlv2_embedding, Prompt(reference=reference))
    finally:
        owlv2.box_threshold = 0.0
    assert prediction.masks.shape == (1, HEIGHT, WIDTH) and not prediction.masks.any()
    assert prediction.scores.tolist() == [0.0]


def test_owlv2_rejects_points(owlv2, owlv2_embedding):
    with pytest.raises(UnsupportedPromptError):
        owlv2.predict(owlv2_embedding, Prompt(points=Points.from_lists([(1, 1)])))


# --- Grounding DINO + SAM ----------------------------------------------------------------------


def test_grounding_dino_detections_match_the_processor(gdino, gdino_embedding, image):
    # 48 x 80 with shortest side 128 would be 128 x 213 > 160, so the longest side becomes 160: 96 x 160.
    assert gdino_embedding.part("detector").pixel_values.shape == (1, 3, 96, 160)
    inputs = gdino.processor(images=[image], text=["A Person"], return_tensors="pt")
    torch.testing.assert_close(gdino_embedding.part("detector").pixel_values, inputs["pixel_values"])
    assert gdino.processor.tokenizer.decode(inputs["input_ids"][0]) == "[CLS] a person. [SEP]"
    with torch.no_grad():
        outputs = gdino.model(**inputs)
    expected = gdino.processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.25, target_sizes=[(HEIGHT, WIDTH)]
    )[0]
    detector = gdino_embedding.part("detector")
    torch.testing.assert_close(detector.pixel_mask, inputs["pixel_mask"])
    mine = gdino.detect_from(detector, Prompt(text=Text("A Person")))
    order = np.argsort(-expected["scores"].numpy(), kind="stable")
    np.testing.assert_allclose(mine.scores, expected["scores"].numpy()[order], atol=1e-5)
    np.testing.assert_allclose(mine.boxes, expected["boxes"].numpy()[order], atol=1e-3)


def test_grounding_dino_boxes_land_in_original_pixels(gdino, gdino_embedding, monkeypatch):
    # Boxes are fractions of the unpadded image: centre (0.25, 0.5), size (0.5, 0.25) -> x 0..40, y 18..30.
    logits = torch.full((1, 2, 256), -10.0)
    logits[0, 0, 1] = 4.0  # the first query grounds token 1 strongly
    boxes = torch.tensor([[[0.25, 0.5, 0.5, 0.25], [0.9, 0.9, 0.1, 0.1]]])
    monkeypatch.setattr(gdino, "model", lambda **inputs: SimpleNamespace(logits=logits, pred_boxes=boxes))
    gdino.box_threshold = 0.35
    try:
        detections = gdino.detect(gdino_embedding, Prompt(text=Text("a person")))
    finally:
        gdino.box_threshold = 0.0
    assert len(detections) == 1
    np.testing.assert_allclose(detections.boxes[0], [0, 18, 40, 30], atol=1e-4)
    assert detections.scores[0] == pytest.approx(1 / (1 + np.exp(-4.0)), rel=1e-5)


def test_grounding_dino_predicts_top_k_masks_and_rejects_references(gdino, gdino_embedding, reference):
    prediction = gdino.predict(gdino_embedding, Prompt(text=Text("a person")))
    assert prediction.masks.shape == (3, HEIGHT, WIDTH) and prediction.masks.dtype == bool
    assert prediction.scores.dtype == np.float32 and (np.diff(prediction.scores) <= 0).all()
    with pytest.raises(UnsupportedPromptError, match="does not accept reference"):
        gdino.predict(gdino_embedding, Prompt(reference=reference))


def test_detections_clip_and_sort():
    detections = Detections([[-5, 2, 30, 60], [10, 10, 20, 20], [90, 5, 99, 9]], [0.2, 0.9, 0.5])
    clipped = detections.clipped((48, 80))  # the third box lies right of x = 80: no area left
    np.testing.assert_allclose(clipped.boxes, [[10, 10, 20, 20], [0, 2, 30, 48]])
    np.testing.assert_allclose(clipped.scores, [0.9, 0.2])


# --- SegGPT ------------------------------------------------------------------------------------


def test_seggpt_matches_the_processor_pipeline(seggpt, image, reference):
    embedding = seggpt.embed(image)
    prediction = seggpt.predict(embedding, Prompt(reference=reference))
    inputs = seggpt.processor(
        images=image, prompt_images=reference.image.copy(), prompt_masks=reference.mask.astype(np.uint8),
        num_labels=1, return_tensors="pt",
    )
    torch.testing.assert_close(embedding.pixel_values, inputs["pixel_values"])
    with torch.no_grad():
        outputs = seggpt.model(**inputs)
    expected = seggpt.processor.post_process_semantic_segmentation(
        outputs, target_sizes=[(HEIGHT, WIDTH)], num_labels=1
    )[0]
    assert prediction.masks.shape == (1, HEIGHT, WIDTH)
    np.testing.assert_array_equal(prediction.masks[0], expected.numpy() == 1)
    assert prediction.probabilities.dtype == np.float32
    assert 0.0 <= prediction.probabilities.min() and prediction.probabilities.max() <= 1.0


def test_seggpt_painted_canvas_maps_to_original_pixels(seggpt, image, reference, monkeypatch):
    # Paint the lower (target) half of the 128 x 64 output: the object colour on the left half.
    palette = np.array(seggpt.processor.get_palette(1), np.float32) / 255.0
    mean = np.array(seggpt.processor.image_mean, np.float32)[:, None, None]
    std = np.array(seggpt.processor.image_std, np.float32)[:, None, None]
    canvas = np.zeros((3, 128, 64), np.float32) + palette[0][:, None, None]
    canvas[:, 64:, :32] = palette[1][:, None, None]
    painted = torch.from_numpy((canvas - mean) / std)[None]
    monkeypatch.setattr(seggpt, "model", lambda **inputs: SimpleNamespace(pred_masks=painted))
    prediction = seggpt.predict(seggpt.embed(image), Prompt(reference=reference))
    expected = np.zeros((HEIGHT, WIDTH), bool)
    expected[:, : WIDTH // 2] = True
    np.testing.assert_array_equal(prediction.masks[0], expected)
    np.testing.assert_allclose(prediction.probabilities, expected.astype(np.float32), atol=1e-4)
    assert prediction.scores[0] == pytest.approx(1.0, abs=1e-4)


def test_seggpt_rejects_text(seggpt, image):
    with pytest.raises(UnsupportedPromptError, match="does not accept text"):
        seggpt.segment(image, Prompt(text=Text("a cat")))
