"""SAM 3 concept segmentation: every instance and the semantic map equal transformers' pipeline's.

The backend loads the tiny ``facebook/sam3``-like folder of
:func:`~segprompt.testing.tiny_sam3_dir`; the reference is transformers'
``Sam3Processor`` (with segprompt's offline CLIP tokenizer) -> ``Sam3Model`` ->
``post_process_instance_segmentation`` / ``post_process_semantic_segmentation``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from segprompt.backends import create
from segprompt.backends.sam3 import Sam3Segmenter, sam3_processor
from segprompt.cache import EmbeddingCache
from segprompt.errors import CheckpointError, SegpromptError, UnsupportedPromptError
from segprompt.hub import PretrainedModel
from segprompt.instances import InstancesPrediction
from segprompt.prompts import Box, Exemplars, MaskPrompt, Points, Prompt, Text
from segprompt.semantic import segment_classes
from segprompt.testing import tiny_sam3_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LANDSCAPE = data.coffee()[::4, ::4]  # 100 x 150
PORTRAIT = np.ascontiguousarray(LANDSCAPE.transpose(1, 0, 2))  # 150 x 100


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_sam3_dir(tmp_path_factory.mktemp("sam3"), seed=0)


@pytest.fixture(scope="module")
def sam3(folder):
    return create("sam3", model_dir=folder, threshold=0.0)


def _with_threshold(sam3, threshold: float):
    """The same loaded model answering with another score threshold."""
    return Sam3Segmenter(pretrained=PretrainedModel(sam3.model, sam3.processor, sam3.model_id), threshold=threshold)


@pytest.fixture(scope="module")
def reference(folder):
    from transformers import Sam3ImageProcessor, Sam3Model

    return Sam3Model.from_pretrained(str(folder)).eval(), sam3_processor(Sam3ImageProcessor.from_pretrained(str(folder)))


def _prompts(image: np.ndarray) -> dict[str, Prompt]:
    height, width = image.shape[:2]
    exemplars = Exemplars.from_boxes(
        [Box(0.1 * width, 0.2 * height, 0.4 * width, 0.6 * height)], [Box(0.6 * width, 0.5 * height, width, height)]
    )
    return {
        "text": Prompt(text=Text("coffee cup")),
        "exemplars": Prompt(exemplars=exemplars),
        "text+exemplars": Prompt(text=Text("cup"), exemplars=exemplars),
    }


def _pipeline(reference, image: np.ndarray, prompt: Prompt, threshold: float):
    model, processor = reference
    kwargs = {}
    if prompt.text is not None:
        kwargs["text"] = prompt.text.phrase
    if prompt.exemplars is not None:
        kwargs["input_boxes"] = [prompt.exemplars.boxes.tolist()]
        kwargs["input_boxes_labels"] = [prompt.exemplars.labels.tolist()]
    inputs = processor(images=image, return_tensors="pt", **kwargs)
    sizes = inputs.pop("original_sizes").tolist()
    with torch.inference_mode():
        outputs = model(**inputs)
    instances = processor.post_process_instance_segmentation(outputs, threshold=threshold, mask_threshold=0.5, target_sizes=sizes)[0]
    semantic = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes, return_segmentation_scores=True)[0]
    order = np.argsort(-instances["scores"].numpy(), kind="stable")
    return (
        instances["masks"].numpy().astype(bool)[order],
        instances["scores"].numpy()[order],
        instances["boxes"].numpy()[order],
        semantic.segmentation_scores[0].numpy(),
    )


@pytest.mark.parametrize("image", [LANDSCAPE, PORTRAIT], ids=["landscape", "portrait"])
def test_instances_and_semantic_map_equal_the_transformers_pipeline(sam3, reference, image):
    embedding = sam3.embed(image)
    for kind, prompt in _prompts(image).items():
        # Random-init scores cluster near 0.25: the median keeps some of the 20 queries and drops others.
        threshold = float(np.median(sam3.predict(embedding, prompt).instances.scores))
        backend = _with_threshold(sam3, threshold)
        answer = backend.predict(embedding, prompt)
        assert isinstance(answer, InstancesPrediction)
        masks, scores, boxes, semantic = _pipeline(reference, image, prompt, threshold)
        assert 0 < len(scores) < 20, kind
        instances = answer.instances
        np.testing.assert_array_equal(instances.masks, masks, err_msg=kind)
        np.testing.assert_array_equal(instances.scores, scores, err_msg=kind)
        np.testing.assert_array_equal(instances.boxes, boxes.astype(np.float64), err_msg=kind)
        np.testing.assert_array_equal(answer.probabilities, semantic, err_msg=kind)
        np.testing.assert_array_equal(answer.masks, masks)
        expected_names = None if prompt.text is None else (prompt.text.phrase,) * len(scores)
        assert instances.class_names == expected_names
        single = backend.predict(embedding, prompt, multimask=False)
        assert single.masks.shape == (1, *image.shape[:2]) and len(single.instances) == len(scores)


def test_nothing_above_the_threshold_is_one_empty_mask(folder):
    strict = create("sam3", model_dir=folder, threshold=0.99)
    answer = strict.predict(strict.embed(LANDSCAPE), Prompt(text=Text("cup")))
    assert len(answer.instances) == 0 and answer.masks.shape == (1, 100, 150) and not answer.best_mask.any()


def test_the_phrase_is_tokenised_offline_with_clips_vocabulary(sam3):
    inputs = sam3.prompt_inputs(Prompt(text=Text("a photo of a cat")), (10, 10))
    ids = inputs["input_ids"][0].tolist()
    assert ids[:7] == [49406, 320, 1125, 539, 320, 2368, 49407] and len(ids) == 32
    assert inputs["attention_mask"][0].sum() == 7


def test_exemplars_are_normalised_centre_boxes(sam3):
    prompt = Prompt(exemplars=Exemplars.from_boxes([Box(10, 20, 30, 60)], [Box(0, 0, 100, 50)]))
    inputs = sam3.prompt_inputs(prompt, (100, 200))
    np.testing.assert_allclose(inputs["input_boxes"][0].numpy(), [[0.1, 0.4, 0.1, 0.4], [0.25, 0.25, 0.5, 0.5]], rtol=1e-6)
    assert inputs["input_boxes_labels"][0].tolist() == [1, 0]


def test_unsupported_kinds_name_the_backend_and_kind(sam3):
    embedding = sam3.embed(LANDSCAPE)
    for prompt, kind in [
        (Prompt(points=Points.from_lists([(3, 3)])), "points"),
        (Prompt(box=Box(0, 0, 9, 9), text=Text("cup")), "box"),
        (Prompt(mask=MaskPrompt(np.ones((100, 150), bool))), "mask"),
    ]:
        with pytest.raises(UnsupportedPromptError, match=f"backend 'sam3' does not accept {kind} prompts"):
            sam3.predict(embedding, prompt)


def test_the_cache_reopens_the_embedding_without_the_encoder(sam3, tmp_path):
    calls = []
    hook = sam3.model.vision_encoder.backbone.register_forward_hook(lambda *args: calls.append(1))  # the ViT
    try:
        cache = EmbeddingCache(tmp_path / "cache")
        first, again = cache.embed(sam3, LANDSCAPE), cache.embed(sam3, LANDSCAPE)
    finally:
        hook.remove()
    assert len(calls) == 1
    prompt = Prompt(text=Text("cup"))
    np.testing.assert_array_equal(sam3.predict(again, prompt).masks, sam3.predict(first, prompt).masks)


def test_classes_merge_through_the_semantic_map(sam3):
    result = segment_classes(LANDSCAPE, {"cup": Text("cup"), "table": Text("table")}, sam3)
    assert result.labels.shape == (100, 150) and result.class_names[0] == "background"


def test_offline_without_a_folder_says_the_weights_are_gated(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(CheckpointError) as info:
        create("sam3")
    message = str(info.value)
    assert "facebook--sam3" in message and "gated" in message and "accept the licence" in message
    assert "hf auth login" in message and "hf download facebook/sam3" in message


def test_thresholds_are_checked(folder):
    with pytest.raises(SegpromptError, match="threshold must lie in"):
        create("sam3", model_dir=folder, threshold=1.0)
    with pytest.raises(SegpromptError, match="mask_threshold must lie in"):
        create("sam3", model_dir=folder, mask_threshold=0.0)


def test_cli_segment_writes_every_instance_as_a_label(folder, sam3, reference, tmp_path):
    import json

    from segprompt.cli import main
    from segprompt.instances import Instances
    from segprompt.io import read_mask, write_image

    image_path, out = tmp_path / "image.png", tmp_path / "cups.png"
    write_image(image_path, LANDSCAPE)
    prompt = Prompt(text=Text("cup"), exemplars=Exemplars.from_boxes([Box(10, 20, 60, 70)], [Box(100, 50, 150, 100)]))
    threshold = float(np.median(sam3.predict(sam3.embed(LANDSCAPE), prompt).instances.scores))
    code = main(["segment", str(image_path), "--backend", "sam3", "--model-dir", str(folder), "--text", "cup",
                 "--exemplar", "10,20,60,70", "--exemplar", "100,50,150,100,0", "--min-score", repr(threshold),
                 "--out", str(out), "--save-prompt", str(tmp_path / "p.json")])
    assert code == 0
    masks, scores, boxes, _ = _pipeline(reference, LANDSCAPE, prompt, threshold)
    expected = Instances(masks, scores, boxes).to_label_map()
    assert expected.max() == len(scores) > 1
    np.testing.assert_array_equal(read_mask(out), expected)
    rows = json.loads((tmp_path / "cups.instances.json").read_text())
    assert [row["label"] for row in rows] == list(range(1, len(scores) + 1))
    np.testing.assert_allclose([row["score"] for row in rows], scores)
    assert rows[0]["class_name"] == "cup" and len(rows[0]["box"]) == 4
    assert Prompt.from_json((tmp_path / "p.json").read_text()) == prompt


def test_cli_rejects_a_bad_exemplar(folder, tmp_path, capsys):
    from segprompt.cli import main
    from segprompt.io import write_image

    image_path = tmp_path / "image.png"
    write_image(image_path, LANDSCAPE)
    code = main(["segment", str(image_path), "--backend", "sam3", "--model-dir", str(folder), "--exemplar", "10,20,5,70",
                 "--out", str(tmp_path / "m.png")])
    assert code == 2 and "--exemplar '10,20,5,70': box: inverted or empty box" in capsys.readouterr().err
