"""SAM 2.1, SAM-HQ, EdgeTAM and SAM 3's tracker: the transformers pipeline's masks and scores, cache, errors.

Each backend loads a tiny random-init model folder made with ``save_pretrained``
(SAM 3's tracker: the ``facebook/sam3``-like folder of :func:`tiny_sam3_dir`)
and is compared with the transformers pipeline on the same folder and inputs:
processor (image and prompt) -> model -> ``processor.post_process_masks``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from segprompt.backends import create
from segprompt.backends.sam import binary_mask_to_logits
from segprompt.cache import EmbeddingCache
from segprompt.errors import CheckpointError, PromptError, SegpromptError, UnsupportedPromptError
from segprompt.hub import local_model_dir
from segprompt.prompts import Box, Exemplars, MaskPrompt, Points, Prompt, Text
from segprompt.testing import tiny_edgetam_dir, tiny_sam2_dir, tiny_sam3_dir, tiny_sam_hq_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LANDSCAPE = data.coffee()[::4, ::4]  # 100 x 150
PORTRAIT = np.ascontiguousarray(LANDSCAPE.transpose(1, 0, 2)[:, ::-1])  # 150 x 100
IMAGES = {"landscape": LANDSCAPE, "portrait": PORTRAIT}

FOLDER_MAKERS = {"sam2": tiny_sam2_dir, "sam-hq": tiny_sam_hq_dir, "edgetam": tiny_edgetam_dir, "sam3-tracker": tiny_sam3_dir}
BACKENDS = tuple(FOLDER_MAKERS)


def _transformers_classes(name: str):
    import transformers as tf

    return {
        "sam2": (tf.Sam2Model, tf.Sam2Processor),
        "sam-hq": (tf.SamHQModel, tf.SamHQProcessor),
        "edgetam": (tf.EdgeTamModel, tf.Sam2Processor),
        "sam3-tracker": (tf.Sam3TrackerModel, tf.Sam3TrackerProcessor),
    }[name]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, object]:
    return {name: make(tmp_path_factory.mktemp(name), seed=0) for name, make in FOLDER_MAKERS.items()}


@pytest.fixture(scope="module")
def backends(folders) -> dict[str, object]:
    return {name: create(name, model_dir=folder) for name, folder in folders.items()}


@pytest.fixture(scope="module")
def references(folders) -> dict[str, tuple[object, object]]:
    """The transformers model and processor of each folder, loaded independently of segprompt."""
    loaded = {}
    for name, folder in folders.items():
        model_class, processor_class = _transformers_classes(name)
        loaded[name] = (model_class.from_pretrained(str(folder)).eval(), processor_class.from_pretrained(str(folder)))
    return loaded


@pytest.fixture(scope="module")
def embeddings(backends) -> dict[tuple[str, str], object]:
    return {(name, key): backend.embed(image) for name, backend in backends.items() for key, image in IMAGES.items()}


def _prompts(image: np.ndarray) -> dict[str, Prompt]:
    height, width = image.shape[:2]
    mask = np.zeros((height, width), bool)
    mask[height // 4 : height // 2, width // 3 : 2 * width // 3] = True
    include = (0.6 * width, 0.3 * height)
    return {
        "points": Prompt(points=Points.from_lists([include, (0.2 * width, 0.8 * height)], [(0.9 * width, 0.1 * height)])),
        "box": Prompt(box=Box(0.1 * width, 0.2 * height, 0.7 * width, 0.9 * height)),
        "box+point": Prompt(box=Box(5, 5, width - 5, height // 2), points=Points.from_lists([include])),
        "mask": Prompt(mask=MaskPrompt(mask)),
        "mask+point": Prompt(mask=MaskPrompt(mask), points=Points.from_lists([include])),
    }


def _pipeline(name: str, reference, backend, embedding, prompt: Prompt, multimask: bool):
    """transformers' own path: processor(image, prompt) -> model(pixel_values, ...) -> post_process_masks."""
    model, processor = reference
    image = embedding.image
    hq = name == "sam-hq"
    kwargs = {}
    if prompt.points is not None:
        points = prompt.points.xy.tolist()
        kwargs["input_points"] = [points] if hq else [[points]]
        kwargs["input_labels"] = [prompt.points.labels.tolist()] if hq else [[prompt.points.labels.tolist()]]
    if prompt.box is not None:
        kwargs["input_boxes"] = [[prompt.box.as_array().tolist()]]
    inputs = processor(images=image, return_tensors="pt", **kwargs)
    if prompt.mask is not None:
        # The models take low-resolution logits; a binary mask is put in the model's frame first.
        logits = backend.mask_logits(prompt, embedding.frame)
        inputs["input_masks"] = torch.from_numpy(logits)[None, None]
    extra = {"hq_token_only": False} if hq else {}
    forward = {k: v for k, v in inputs.items() if k not in ("original_sizes", "reshaped_input_sizes")}
    with torch.inference_mode():
        output = model(**forward, multimask_output=multimask, **extra)
    sizes = [inputs["original_sizes"]] + ([inputs["reshaped_input_sizes"]] if hq else [])
    masks = processor.post_process_masks(output.pred_masks, *sizes)[0]
    return masks[0].numpy(), output.iou_scores[0, 0].numpy(), output.pred_masks[0, 0].numpy()


@pytest.mark.parametrize("image_key", sorted(IMAGES))
@pytest.mark.parametrize("name", BACKENDS)
def test_masks_and_scores_equal_the_transformers_pipeline(backends, references, embeddings, name, image_key):
    image = IMAGES[image_key]
    backend, embedding = backends[name], embeddings[(name, image_key)]
    cases = [(kind, prompt, True) for kind, prompt in _prompts(image).items()] + [("points", _prompts(image)["points"], False)]
    for kind, prompt, multimask in cases:
        answer = backend.predict(embedding, prompt, multimask=multimask)
        masks, scores, low_res = _pipeline(name, references[name], backend, embedding, prompt, multimask)
        assert answer.masks.shape == (3 if multimask else 1, *image.shape[:2]), kind
        np.testing.assert_array_equal(answer.masks, masks, err_msg=f"{name} {image_key} {kind}")
        np.testing.assert_array_equal(answer.scores, scores, err_msg=f"{name} {image_key} {kind}")
        np.testing.assert_array_equal(answer.low_res_logits, low_res, err_msg=f"{name} {image_key} {kind}")
    # The logits fed back as a mask prompt are the pipeline's input_masks, as in SAM's refinement loop.
    first = backend.predict(embedding, _prompts(image)["points"])
    refine = Prompt(mask=MaskPrompt(first.low_res_logits[first.best], "logits"), points=_prompts(image)["points"].points)
    masks, scores, _ = _pipeline(name, references[name], backend, embedding, refine, True)
    np.testing.assert_array_equal(backend.predict(embedding, refine).masks, masks)


def _benchmark_prompts(image: np.ndarray) -> list[Prompt]:
    """Prompts of several shapes, as a benchmark gives them: 1-3 points, points + box, a box, a mask."""
    height, width = image.shape[:2]
    rng = np.random.default_rng(0)

    def points(n_include: int, n_exclude: int) -> Points:
        xy = rng.uniform((0, 0), (width, height), size=(n_include + n_exclude, 2))
        return Points.from_lists(xy[:n_include].tolist(), xy[n_include:].tolist())

    shaped = [points(1, 0), points(1, 0), points(2, 1), points(1, 0), points(2, 1), points(1, 0), points(2, 0)]
    prompts = [Prompt(points=p) for p in shaped]
    fixed = _prompts(image)
    return prompts + [fixed["box"], fixed["box+point"], fixed["mask+point"], fixed["mask"], Prompt(points=shaped[0])]


#: Batched matrix products round differently from one prompt's (about 1e-11 here): the tolerance of batched logits
#: and scores, and the logit magnitude below which a batched pixel may fall on the other side of 0.
ROUNDING = 1e-6


@pytest.mark.parametrize("name", BACKENDS)
def test_batched_decoding_equals_predict(backends, embeddings, name):
    """``predict_batches`` (the benchmarks' path) gives ``predict``'s scores, choices and masks for every prompt.

    Several prompts in one forward round differently than one alone: logits
    and scores agree to :data:`ROUNDING`, masks wherever ``predict``'s logit is
    farther than that from 0. ``exact=True`` decodes each prompt alone and is
    bit for bit.
    """
    backend, embedding = backends[name], embeddings[(name, "portrait")]
    prompts = _benchmark_prompts(PORTRAIT)
    for multimask in (True, False):
        expected = [backend.predict(embedding, prompt, multimask) for prompt in prompts]
        for select, exact in (("all", False), ("best", False), ("first", False), ("best", True)):
            seen = []
            for batch in backend.predict_batches(
                embedding, prompts, multimask=multimask, select=select, keep_logits=True, exact=exact, chunk_size=3
            ):
                assert len(batch.indices) <= (1 if exact else 3)
                for row, index in enumerate(batch.indices):
                    answer, chosen = expected[index], batch.candidates[row].numpy()
                    where = f"{name} multimask={multimask} {select} exact={exact} prompt {index}"
                    logits = batch.low_res_logits[row].numpy()
                    if exact:
                        np.testing.assert_array_equal(batch.scores[row].numpy(), answer.scores, err_msg=where)
                        np.testing.assert_array_equal(logits, answer.low_res_logits[chosen], err_msg=where)
                        np.testing.assert_array_equal(batch.masks[row].numpy(), answer.masks[chosen], err_msg=where)
                    else:
                        np.testing.assert_allclose(batch.scores[row].numpy(), answer.scores, atol=ROUNDING, err_msg=where)
                        np.testing.assert_allclose(logits, answer.low_res_logits[chosen], atol=ROUNDING, err_msg=where)
                        full = backend.post_process(torch.from_numpy(answer.low_res_logits[chosen])[None, None], embedding)[0]
                        clear = full.abs().numpy() > ROUNDING
                        np.testing.assert_array_equal(batch.masks[row].numpy()[clear], answer.masks[chosen][clear], where)
                    top = np.sort(answer.scores)[::-1]
                    if select == "best" and (len(top) == 1 or top[0] - top[1] > ROUNDING):
                        assert chosen.tolist() == [answer.best], where
                    elif select != "best":
                        assert chosen.tolist() == (list(range(len(answer.scores))) if select == "all" else [0]), where
                seen += batch.indices
            assert sorted(seen) == list(range(len(prompts)))


@pytest.mark.parametrize("name", ["sam2", "sam3-tracker"])
def test_score_prompts_batches_as_predict_scores(backends, embeddings, name):
    """The benchmarks' scoring on a SAM-family backend: ``exact`` gives ``predict``'s choices and IoUs."""
    from segprompt.evaluation import score_prompts
    from segprompt.metrics import iou

    backend, embedding = backends[name], embeddings[(name, "landscape")]
    prompts = _benchmark_prompts(LANDSCAPE)
    gt = np.zeros(LANDSCAPE.shape[:2], bool)
    gt[20:70, 40:110] = True
    for select in ("best", "first", "oracle"):
        scored = score_prompts(backend, embedding, prompts, gt, select=select, keep_logits=True, exact=True)
        for index, prompt in enumerate(prompts):
            answer = backend.predict(embedding, prompt)
            ious = [iou(mask, gt) for mask in answer.masks]
            pick = {"best": answer.best, "first": 0, "oracle": int(np.argmax(ious))}[select]
            assert scored.selected[index] == pick and scored.iou[index] == pytest.approx(ious[pick], abs=1e-12)
            np.testing.assert_array_equal(scored.scores[index], answer.scores)
            np.testing.assert_array_equal(scored.low_res_logits[index], answer.low_res_logits[pick])
        batched = score_prompts(backend, embedding, prompts, gt, select=select, chunk_size=4)
        np.testing.assert_allclose(batched.iou, scored.iou, atol=1e-3)  # a pixel or two may round to the other side


def test_low_resolution_frames(backends):
    assert {name: backends[name].low_res_side for name in BACKENDS} == {
        "sam2": 256,
        "sam-hq": 256,
        "edgetam": 256,
        "sam3-tracker": 288,
    }


def test_binary_mask_frames_square_and_padded():
    mask = np.zeros((100, 200), bool)
    mask[:, :100] = True  # left half
    square = binary_mask_to_logits(mask, side=256, keep_aspect=False)
    assert square.shape == (256, 256)
    assert (square[:, :128] > 6).all() and (square[:, 128:] < -6).all()  # the squashed image fills the square
    padded = binary_mask_to_logits(mask, side=256, keep_aspect=True)
    assert (padded[:128, :128] > 6).all() and (padded[:128, 128:] < -6).all() and (padded[128:] < -6).all()


@pytest.mark.parametrize("name", BACKENDS)
def test_unsupported_kinds_name_the_backend_and_kind(backends, embeddings, name):
    embedding = embeddings[(name, "landscape")]
    with pytest.raises(UnsupportedPromptError, match=f"backend '{name}' does not accept text prompts"):
        backends[name].predict(embedding, Prompt(text=Text("cup")))
    with pytest.raises(UnsupportedPromptError, match="does not accept exemplars prompts"):
        backends[name].predict(embedding, Prompt(exemplars=Exemplars.from_boxes([Box(0, 0, 5, 5)])))


def test_logits_of_another_frame_are_refused(backends, embeddings):
    other = MaskPrompt(np.zeros((256, 256), np.float32), "logits")
    with pytest.raises(PromptError, match=r"backend 'sam3-tracker' takes \(288, 288\) logits"):
        backends["sam3-tracker"].predict(embeddings[("sam3-tracker", "landscape")], Prompt(mask=other))


@pytest.mark.parametrize("name", BACKENDS)
def test_the_cache_reopens_the_embedding_without_the_encoder(backends, embeddings, tmp_path, name):
    backend = backends[name]
    calls = []
    # the heavy part of the encoder (SAM 3's tracker runs its ViT directly: the backbone it shares with SAM 3)
    encoder = getattr(backend.model.vision_encoder, "backbone", backend.model.vision_encoder)
    hook = encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        cache = EmbeddingCache(tmp_path / "cache")
        first = cache.embed(backend, LANDSCAPE)
        again = cache.embed(backend, LANDSCAPE)
    finally:
        hook.remove()
    assert len(calls) == 1
    prompt = _prompts(LANDSCAPE)["box+point"]
    expected = backend.predict(embeddings[(name, "landscape")], prompt)
    for embedding in (first, again):
        np.testing.assert_array_equal(backend.predict(embedding, prompt).masks, expected.masks)


@pytest.mark.parametrize(
    "name, folder",
    [
        ("sam2", "facebook--sam2.1-hiera-large"),
        ("sam-hq", "syscv-community--sam-hq-vit-base"),
        ("edgetam", "yonigozlan--EdgeTAM-hf"),
        ("sam3-tracker", "facebook--sam3"),
    ],
)
def test_offline_without_a_folder_names_it(tmp_path, monkeypatch, name, folder):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(CheckpointError, match="not available offline") as info:
        create(name)
    message = str(info.value)
    assert str(local_model_dir(folder.replace("--", "/"))) in message and local_model_dir("a/b").parent.name == "models"
    assert folder in message and "hf download" in message  # the CLI adds its own flag (tests/test_cli_advice.py)
    assert ("gated" in message) == (name == "sam3-tracker")


def test_variants_pick_the_released_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(CheckpointError, match="facebook--sam2.1-hiera-base-plus"):
        create("sam2", variant="base-plus")
    with pytest.raises(SegpromptError, match="unknown variant 'huge'; known: tiny, small, base-plus, large"):
        create("sam2", variant="huge")


@pytest.mark.parametrize("name", BACKENDS)
def test_cli_segment_writes_the_pipelines_mask(folders, references, backends, embeddings, tmp_path, name):
    from segprompt.cli import main
    from segprompt.io import read_mask, write_image

    image_path, out = tmp_path / "portrait.png", tmp_path / "m.png"
    write_image(image_path, PORTRAIT)
    code = main(["segment", str(image_path), "--backend", name, "--model-dir", str(folders[name]), "--point", "60,40",
                 "--out", str(out)])
    assert code == 0
    prompt = Prompt(points=Points.from_lists([(60, 40)]))
    masks, _, _ = _pipeline(name, references[name], backends[name], embeddings[(name, "portrait")], prompt, multimask=False)
    np.testing.assert_array_equal(read_mask(out), masks[0].astype(np.uint8) * 255)


def test_cli_flags_a_backend_does_not_use_are_errors(folders, tmp_path, capsys):
    from segprompt.cli import main
    from segprompt.io import write_image

    image_path = tmp_path / "image.png"
    write_image(image_path, LANDSCAPE)
    args = ["segment", str(image_path), "--point", "3,3", "--out", str(tmp_path / "m.png")]
    assert main(args + ["--backend", "edgetam", "--model-dir", str(folders["edgetam"]), "--variant", "large"]) == 2
    assert "--variant is not used by the 'edgetam' backend" in capsys.readouterr().err
    assert main(args + ["--backend", "sam2", "--model-dir", str(folders["sam2"]), "--min-score", "0.3"]) == 2
    assert "--min-score is not used by the 'sam2' backend" in capsys.readouterr().err
