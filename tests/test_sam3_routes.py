"""What SAM 3 cannot do alone, composed: text + points (``sam3-refine``), a reference from another image (``sam3-reference``).

Every answer is compared with the same steps done by hand on the standalone
backends (``sam3``, ``sam3-tracker``, ``owlv2-sam``, ``persam``, ``seggpt``),
each with its own embedding of the image; all models are tiny random-init
folders built here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from segprompt.backends import create
from segprompt.backends.exemplars import component_boxes
from segprompt.backends.seggpt import SegGptSegmenter
from segprompt.cache import EmbeddingCache
from segprompt.compose import ComposedSegmenter, choose_candidate
from segprompt.errors import SegpromptError, UnsupportedPromptError
from segprompt.instances import InstancesPrediction
from segprompt.prompts import Box, Exemplars, Points, Prompt, Text, VisualReference
from segprompt.testing import random_seggpt, tiny_owlv2_dir, tiny_sam3_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE = data.coffee()[::4, ::4]  # 100 x 150: the target
REFERENCE_IMAGE = data.astronaut()[::4, ::4]  # 128 x 128: another image
REFERENCE_MASK = np.zeros(REFERENCE_IMAGE.shape[:2], bool)
REFERENCE_MASK[20:90, 30:100] = True
REFERENCE = VisualReference(REFERENCE_IMAGE, REFERENCE_MASK)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {"sam3": tiny_sam3_dir(tmp_path_factory.mktemp("sam3")), "owlv2": tiny_owlv2_dir(tmp_path_factory.mktemp("owlv2"))}


@pytest.fixture(scope="module")
def refine(folders):
    # threshold 0: the random detector's instances score about 0.25, so all of them come back
    return create("sam3-refine", model_dir=folders["sam3"], threshold=0.0)


@pytest.fixture(scope="module")
def embedding(refine):
    return refine.embed(IMAGE)


@pytest.fixture(scope="module")
def alone(refine):
    """The detector's and the tracker's own embeddings of the image (each running the ViT)."""
    return refine.proposer.embed(IMAGE), refine.refiner.embed(IMAGE)


def _backbone_calls(*segmenters):
    calls: list[int] = []
    handles = [s.model.vision_encoder.backbone.register_forward_hook(lambda *a: calls.append(1)) for s in segmenters]
    return calls, handles


def test_text_and_points_encode_the_image_once_for_both_models(refine, alone, tmp_path):
    assert refine.shares_backbone
    calls, handles = _backbone_calls(refine.proposer, refine.refiner)
    try:
        embedding = refine.embed(IMAGE)
        assert len(calls) == 1, "SAM 3's ViT must run once for the detector and the tracker"
        cache = EmbeddingCache(tmp_path / "cache")
        cache.embed(refine, IMAGE)
        reopened = cache.embed(refine, IMAGE)
        assert len(calls) == 2, "a cached image runs no encoder"
    finally:
        for handle in handles:
            handle.remove()
    # each part is exactly what the backend makes alone
    for role, own in zip(("proposer", "refiner"), alone):
        for built in (embedding, reopened):
            part = built.part(role)
            tensors = part.fpn_hidden_states if role == "proposer" else part.image_embeddings
            expected = own.fpn_hidden_states if role == "proposer" else own.image_embeddings
            assert len(tensors) == len(expected)
            for got, want in zip(tensors, expected):
                assert torch.equal(got, want), role


def test_text_alone_is_every_sam3_instance(refine, embedding, alone):
    prompt = Prompt(text=Text("cup"))
    answer, expected = refine.predict(embedding, prompt), refine.proposer.predict(alone[0], prompt)
    assert isinstance(answer, InstancesPrediction) and len(answer.instances) == len(expected.instances) > 1
    np.testing.assert_array_equal(answer.instances.masks, expected.instances.masks)
    np.testing.assert_array_equal(answer.instances.scores, expected.instances.scores)
    np.testing.assert_array_equal(answer.instances.boxes, expected.instances.boxes)
    np.testing.assert_array_equal(answer.probabilities, expected.probabilities)


def test_points_pick_an_instance_and_the_tracker_refines_it(refine, embedding, alone):
    instances = refine.proposer.predict(alone[0], Prompt(text=Text("cup"))).instances
    include, exclude = (75.0, 50.0), (10.0, 90.0)
    survivors = instances[~instances.masks[:, 90, 10]]
    chosen = survivors[[choose_candidate(survivors, np.array([include]))]]
    points = Points.from_lists([include], [exclude])
    expected = refine.refiner.predict(alone[1], Prompt(points=points, box=Box.from_mask(chosen.masks[0])))
    answer = refine.predict(embedding, Prompt(text=Text("cup"), points=points))
    assert not isinstance(answer, InstancesPrediction) and answer.masks.shape == (3, *IMAGE.shape[:2])
    np.testing.assert_array_equal(answer.masks, expected.masks)
    np.testing.assert_array_equal(answer.scores, expected.scores)


def test_exclude_points_alone_remove_instances_and_their_pixels(refine, embedding):
    everything = refine.predict(embedding, Prompt(text=Text("cup")))
    row, col = 90, 10
    answer = refine.predict(embedding, Prompt(text=Text("cup"), points=Points.from_lists([], [(col + 0.5, row + 0.5)])))
    assert isinstance(answer, InstancesPrediction)
    removed = everything.instances.masks[:, row, col]
    assert removed.any() and len(answer.instances) == int((~removed).sum())
    assert not answer.instances.masks[:, row, col].any()
    gone = everything.instances[removed].union() & ~answer.instances.union()
    assert (answer.probabilities[gone] == 0).all() and answer.probabilities[row, col] == 0
    np.testing.assert_array_equal(answer.probabilities[~gone], everything.probabilities[~gone])


@pytest.fixture(scope="module")
def reference_route(folders):
    return create("sam3-reference", model_dir=folders["sam3"], exemplar_model_dir=folders["owlv2"], threshold=0.0)


def test_a_reference_from_another_image_becomes_exemplars_for_sam3(reference_route, alone):
    route = reference_route
    embedding = route.embed(IMAGE)
    owlv2 = route.exemplar_proposer
    assert owlv2.name == "owlv2-sam" and owlv2.sam is route.refiner  # its SAM stage is the tracker, never run
    detections = owlv2.detect(owlv2.embed_for_exemplars(IMAGE), Prompt(reference=REFERENCE))
    boxes = detections.boxes[: owlv2.top_k]
    assert len(boxes) >= 1
    for text in (None, Text("cup")):
        prompt = Prompt(reference=REFERENCE, text=text)
        expected = route.proposer.predict(alone[0], Prompt(text=text, exemplars=Exemplars(boxes, np.ones(len(boxes)))))
        answer = route.predict(embedding, prompt)
        assert isinstance(answer, InstancesPrediction)
        np.testing.assert_array_equal(answer.instances.masks, expected.instances.masks)
        np.testing.assert_array_equal(answer.instances.scores, expected.instances.scores)
        np.testing.assert_array_equal(answer.probabilities, expected.probabilities)
    # the user's own exemplars (a negative here) join the proposed ones
    negative = Exemplars.from_boxes([], [Box(100, 60, 150, 100)])
    expected = route.proposer.predict(alone[0], Prompt(exemplars=Exemplars(
        np.concatenate([negative.boxes, boxes]), np.concatenate([[0], np.ones(len(boxes), np.int64)]))))
    answer = route.predict(embedding, Prompt(reference=REFERENCE, exemplars=negative))
    np.testing.assert_array_equal(answer.instances.scores, expected.instances.scores)


def test_persam_and_seggpt_propose_the_components_of_their_mask(refine, alone, tiny_sam):
    for proposer in (create("persam", sam=tiny_sam), SegGptSegmenter(pretrained=random_seggpt("tiny"))):
        composed = ComposedSegmenter(refine.proposer, refine.refiner, exemplar_proposer=proposer)
        embedding = composed.embed(IMAGE)
        mask = proposer.predict(proposer.embed(IMAGE), Prompt(reference=REFERENCE)).best_mask
        boxes = component_boxes(mask)
        proposed = composed.exemplar_proposer.propose_exemplars(embedding.part("exemplars"), REFERENCE)
        if not len(boxes):  # the random SegGPT paints nothing here
            assert proposed is None and proposer.name == "seggpt"
            continue
        np.testing.assert_array_equal(proposed.boxes, boxes)
        assert proposed.labels.tolist() == [1] * len(boxes)
        expected = refine.proposer.predict(alone[0], Prompt(exemplars=proposed))
        answer = composed.predict(embedding, Prompt(reference=REFERENCE))
        np.testing.assert_array_equal(answer.instances.scores, expected.instances.scores)


def test_no_exemplar_found_is_no_instance_unless_points_ask_the_tracker(refine, folders):
    owlv2 = create("owlv2-sam", model_dir=folders["owlv2"], sam=refine.refiner, box_threshold=0.999999)
    composed = ComposedSegmenter(refine.proposer, refine.refiner, exemplar_proposer=owlv2)
    embedding = composed.embed(IMAGE)
    answer = composed.predict(embedding, Prompt(reference=REFERENCE))
    assert isinstance(answer, InstancesPrediction) and len(answer.instances) == 0 and not answer.best_mask.any()
    point = Prompt(points=Points.from_lists([(75, 50)]))
    with_point = composed.predict(embedding, Prompt(reference=REFERENCE, points=point.points))
    np.testing.assert_array_equal(with_point.masks, refine.refiner.predict(embedding.part("refiner"), point).masks)


def test_component_boxes_are_largest_first_without_fragments():
    mask = np.zeros((40, 60), bool)
    mask[2:12, 3:23] = True  # 200 pixels
    mask[20:30, 30:40] = True  # 100
    mask[35, 50:52] = True  # 2: a fragment under 10 % of the largest
    mask[12, 23] = True  # touches the first diagonally: 8-connected, part of it
    np.testing.assert_array_equal(component_boxes(mask), [[3, 2, 24, 13], [30, 20, 40, 30]])
    assert component_boxes(mask, max_count=1).shape == (1, 4)
    assert component_boxes(np.zeros((5, 5), bool)).shape == (0, 4)


def test_the_routes_accept_what_they_answer_and_refuse_the_rest(refine, reference_route, embedding):
    assert refine.supported_kinds() == refine.accepts == {"text", "exemplars", "points", "box", "mask"}
    assert reference_route.supported_kinds() == reference_route.accepts == refine.accepts | {"reference"}
    with pytest.raises(UnsupportedPromptError, match="proposer backend 'sam3' does not accept reference prompts"):
        refine.predict(embedding, Prompt(reference=REFERENCE))
    with pytest.raises(UnsupportedPromptError, match="backend 'sam3' does not accept points"):
        refine.proposer.predict(embedding.part("proposer"), Prompt(text=Text("cup"), points=Points.from_lists([(3, 3)])))
    with pytest.raises(UnsupportedPromptError, match="backend 'sam3-tracker' does not accept text"):
        refine.refiner.predict(embedding.part("refiner"), Prompt(text=Text("cup")))


def test_compositions_that_cannot_work_are_refused_by_name(refine, tiny_clipseg, folders):
    with pytest.raises(SegpromptError, match="'clipseg' cannot propose exemplars from a reference"):
        ComposedSegmenter(refine.proposer, refine.refiner, exemplar_proposer=tiny_clipseg)
    with pytest.raises(SegpromptError, match="needs a proposer taking exemplars .*'clipseg' accepts"):
        ComposedSegmenter(tiny_clipseg, refine.refiner, exemplar_proposer=create("seggpt", pretrained=random_seggpt("tiny")))
    with pytest.raises(SegpromptError, match="exemplar proposer must be one of owlv2-sam, persam, seggpt, got 'clipseg'"):
        create("sam3-reference", model_dir=folders["sam3"], exemplar_proposer="clipseg")
    # SAM 3 and a tracker of other weights share no backbone: each encodes the image itself
    from segprompt.testing import random_sam3_tracker

    other = create("sam3-tracker", pretrained=random_sam3_tracker("tiny", seed=1))
    assert not ComposedSegmenter(refine.proposer, other).shares_backbone


def test_cli_text_and_a_point_write_the_refined_mask(refine, embedding, folders, tmp_path, capsys):
    from segprompt.cli import main
    from segprompt.io import read_mask, write_image

    image_path = tmp_path / "coffee.png"
    write_image(image_path, IMAGE)
    prompt = Prompt(text=Text("cup"), points=Points.from_lists([(75, 50)]))
    expected = refine.predict(embedding, prompt, multimask=False).best_mask.astype(np.uint8) * 255
    common = ["segment", str(image_path), "--model-dir", str(folders["sam3"]), "--min-score", "0", "--text", "cup",
              "--point", "75,50"]
    assert main([*common, "--backend", "sam3-refine", "--out", str(tmp_path / "route.png")]) == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "route.png"), expected)
    assert main([*common, "--backend", "composed", "--proposer", "sam3", "--refiner", "sam3-tracker",
                 "--out", str(tmp_path / "composed.png")]) == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "composed.png"), expected)
    assert main([*common, "--backend", "sam3-refine", "--exemplar-model-dir", str(folders["owlv2"]),
                 "--out", str(tmp_path / "bad.png")]) == 2
    assert "--exemplar-model-dir is not used by the 'sam3-refine' backend" in capsys.readouterr().err


def test_cli_a_reference_image_writes_every_instance(reference_route, folders, tmp_path):
    from segprompt.cli import main
    from segprompt.io import read_mask, write_image, write_mask

    paths = {name: tmp_path / f"{name}.png" for name in ("coffee", "astronaut", "astronaut_mask")}
    write_image(paths["coffee"], IMAGE)
    write_image(paths["astronaut"], REFERENCE_IMAGE)
    write_mask(paths["astronaut_mask"], REFERENCE_MASK)
    expected = reference_route.predict(reference_route.embed(IMAGE), Prompt(reference=REFERENCE)).instances
    reference = ["--reference", str(paths["astronaut"]), "--reference-mask", str(paths["astronaut_mask"])]
    assert main(["segment", str(paths["coffee"]), "--backend", "sam3-reference", "--model-dir", str(folders["sam3"]),
                 "--exemplar-model-dir", str(folders["owlv2"]), "--min-score", "0", *reference,
                 "--out", str(tmp_path / "labels.png")]) == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "labels.png"), expected.to_label_map())
    assert (tmp_path / "labels.instances.json").is_file()
    # the same through the general composition, the detector named as exemplar proposer
    assert main(["segment", str(paths["coffee"]), "--backend", "composed", "--proposer", "sam3", "--refiner",
                 "sam3-tracker", "--exemplar-proposer", "owlv2-sam", "--exemplar-model-dir", str(folders["owlv2"]),
                 "--model-dir", str(folders["sam3"]), "--min-score", "0", *reference,
                 "--out", str(tmp_path / "composed.png")]) == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "composed.png"), expected.to_label_map())


@pytest.mark.parametrize("name", ["sam3-refine", "sam3-reference"])
def test_offline_without_a_folder_the_routes_name_it_and_the_licence(tmp_path, monkeypatch, name):
    from segprompt.errors import CheckpointError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(CheckpointError) as info:
        create(name)
    message = str(info.value)
    assert "facebook--sam3" in message and "gated" in message and "hf download facebook/sam3" in message
