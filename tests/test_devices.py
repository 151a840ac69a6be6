"""Every backend on a GPU, tested where there is none: a CUDA device simulated on the CPU.

:class:`simulated_cuda.SimulatedCuda` makes ``device="cuda"`` a second device
with real values: a tensor made on the host and handed to a model on the
"GPU", ``.numpy()`` of a GPU tensor, or a host/GPU mix in one operation raises
exactly where it would on a GPU. Each backend is built on ``"cuda"``, embeds
and answers a prompt, and must give the CPU's answer; what crosses the bus is
checked for the batch scoring path. Tests on a real GPU are at the end and
skip without one (with the reason); they are never the only test of a path.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from segprompt.backends import create
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.evaluation import MaskTarget, score_prompts
from segprompt.hub import PretrainedModel
from segprompt.prompts import Box, Points, Prompt, Text, VisualReference
from segprompt.testing import (
    tiny_clipseg_dir,
    tiny_edgetam_dir,
    tiny_grounding_dino_dir,
    tiny_owlv2_dir,
    tiny_sam2_dir,
    tiny_sam2_video_dir,
    tiny_sam3_dir,
    tiny_sam_hq_dir,
    tiny_seggpt_dir,
)
from simulated_cuda import SimulatedCuda, pretend_cuda_available

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEIGHT, WIDTH = 40, 56
REQUIRES_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    rgb = (rng.random((HEIGHT, WIDTH, 3)) * 60).astype(np.uint8)
    rgb[10:30, 15:40] += 150  # a bright object
    return rgb


@pytest.fixture(scope="module")
def object_mask():
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[10:30, 15:40] = True
    return mask


@pytest.fixture
def simulated_cuda(monkeypatch):
    """``torch.cuda`` reporting one device (8 GiB free) and the simulated device active for the test."""
    pretend_cuda_available(monkeypatch)
    with SimulatedCuda() as mode:
        yield mode


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "sam2": tiny_sam2_dir(root / "sam2"),
        "sam-hq": tiny_sam_hq_dir(root / "sam_hq"),
        "edgetam": tiny_edgetam_dir(root / "edgetam"),
        "sam3": tiny_sam3_dir(root / "sam3"),
        "clipseg": tiny_clipseg_dir(root / "clipseg"),
        "seggpt": tiny_seggpt_dir(root / "seggpt"),
        "owlv2": tiny_owlv2_dir(root / "owlv2"),
        "gdino": tiny_grounding_dino_dir(root / "gdino"),
        "sam2-video": tiny_sam2_video_dir(root / "sam2_video"),
    }


def _twin(backend) -> PretrainedModel:
    """A copy of ``backend``'s loaded model and its processor, to build the same backend on another device.

    transformers' loading (meta-device initialisation) is not run under the
    simulated device: the loading path is the same on every device and is
    tested elsewhere; what moves to the device is what matters here.
    """
    model_id = getattr(backend, "_model_id", None) or backend._detector_id
    return PretrainedModel(copy.deepcopy(backend.model), backend.processor, model_id)


#: backend -> (build(device, pretrained or None), the prompt it answers); models from tiny random-init folders or seeds.
def _cases(folders, image, object_mask):
    def sam(device):
        return SamSegmenter(model=build_sam("tiny", seed=0), device=device)

    def from_folder(name, folder, **options):
        return lambda device, pretrained: create(name, model_dir=folders[folder], device=device, pretrained=pretrained, **options)

    def detector(name, folder):
        return lambda device, pretrained: create(
            name, model_dir=folders[folder], sam=sam(device), box_threshold=0.0, device=device, pretrained=pretrained
        )

    click = Prompt(points=Points([[25.0, 20.0]], [1]), box=Box(12.0, 8.0, 44.0, 33.0))
    reference = Prompt(reference=VisualReference(image, object_mask))
    return {
        "sam": (lambda device, _: sam(device), click),
        "persam": (lambda device, _: create("persam", model=build_sam("tiny", seed=0), device=device), reference),
        "persam-f": (lambda device, _: create("persam-f", model=build_sam("tiny", seed=0), device=device, fit_iterations=5), reference),
        "sam2": (from_folder("sam2", "sam2"), click),
        "sam-hq": (from_folder("sam-hq", "sam-hq"), click),
        "edgetam": (from_folder("edgetam", "edgetam"), click),
        "sam3-tracker": (from_folder("sam3-tracker", "sam3"), click),
        "sam3": (from_folder("sam3", "sam3", threshold=0.0), Prompt(text=Text("cup"))),
        "clipseg": (from_folder("clipseg", "clipseg"), Prompt(text=Text("coffee"), reference=VisualReference(image, object_mask))),
        "seggpt": (from_folder("seggpt", "seggpt"), reference),
        "owlv2-sam": (detector("owlv2-sam", "owlv2"), Prompt(text=Text("a face"))),
        "grounding-dino-sam": (detector("grounding-dino-sam", "gdino"), Prompt(text=Text("a person"))),
    }


BACKENDS = ["sam", "persam", "persam-f", "sam2", "sam-hq", "edgetam", "sam3-tracker", "sam3", "clipseg", "seggpt",
            "owlv2-sam", "grounding-dino-sam"]  # fmt: skip


def _assert_same_answer(answer, expected) -> None:
    """The GPU's answer is the CPU's up to float rounding.

    Kernels may be picked by device type (attention implementations, einsum
    paths), which moves values by about 1e-6; random-init models put many
    pixels within that of their threshold, so masks are compared by the share
    of pixels that differ.
    """
    assert isinstance(answer.masks, np.ndarray) and isinstance(answer.scores, np.ndarray)
    assert answer.masks.shape == expected.masks.shape
    assert np.mean(answer.masks != expected.masks) < 0.05
    np.testing.assert_allclose(answer.scores, expected.scores, atol=1e-4)
    for field in ("low_res_logits", "probabilities"):
        if getattr(expected, field, None) is not None:
            np.testing.assert_allclose(getattr(answer, field), getattr(expected, field), atol=1e-4)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_on_the_gpu_gives_the_cpu_answer(name, folders, image, object_mask, monkeypatch):
    build, prompt = _cases(folders, image, object_mask)[name]
    on_cpu = build("cpu", None)
    expected = on_cpu.predict(on_cpu.embed(image), prompt)
    pretrained = _twin(on_cpu) if hasattr(on_cpu, "processor") else None
    pretend_cuda_available(monkeypatch)
    with SimulatedCuda() as mode:
        segmenter = build("cuda", pretrained)
        assert segmenter.device == torch.device("cuda", 0)
        answer = segmenter.predict(segmenter.embed(image), prompt)
    assert mode.uploads, "the model went to the device"
    _assert_same_answer(answer, expected)


def test_the_simulated_device_catches_a_host_tensor_handed_to_the_model(simulated_cuda, image, monkeypatch):
    """The check has teeth: SAM with its prompt tensors made on the host fails as it would on a GPU."""
    segmenter = SamSegmenter(model=build_sam("tiny", seed=0), device="cuda")
    embedding = segmenter.embed(image)
    real = torch.as_tensor

    def on_the_host(data, dtype=None, device=None):
        return real(data, dtype=dtype)  # the bug: ``device`` dropped

    monkeypatch.setattr(torch, "as_tensor", on_the_host)
    with pytest.raises(RuntimeError, match="same device"):
        segmenter.predict(embedding, Prompt(points=Points([[25.0, 20.0]], [1])))
    with pytest.raises(TypeError, match="cuda:0 device type tensor to numpy"):
        embedding.features.numpy()


def test_score_prompts_keeps_the_masks_on_the_device(simulated_cuda, image, object_mask):
    """The ground truth goes up once for both calls; only per-prompt numbers come back, never a mask."""
    segmenter = SamSegmenter(model=build_sam("tiny", seed=0), device="cuda")
    embedding = segmenter.embed(image)
    prompts = [Prompt(points=Points([[15.0 + 3 * k, 12.0 + k]], [1])) for k in range(6)]
    target = MaskTarget(object_mask, None, image.shape[:2])
    simulated_cuda.uploads.clear()
    simulated_cuda.downloads.clear()
    first = score_prompts(segmenter, embedding, prompts, target, chunk_size=2)
    second = score_prompts(segmenter, embedding, prompts, target, multimask=False)
    pixels = HEIGHT * WIDTH
    assert sum(np.prod(shape) == pixels for shape in simulated_cuda.uploads) == 2  # the target and its keep mask
    assert all(np.prod(shape) < pixels for shape in simulated_cuda.downloads), simulated_cuda.downloads
    assert first.iou.shape == second.iou.shape == (6,)
    on_cpu = SamSegmenter(model=build_sam("tiny", seed=0), device="cpu")
    expected = score_prompts(on_cpu, on_cpu.embed(image), prompts, object_mask, chunk_size=2)
    np.testing.assert_allclose(first.iou, expected.iou, atol=1e-6)
    np.testing.assert_array_equal(first.selected, expected.selected)


@pytest.mark.parametrize("fits, count, sizes", [(3, 7, [3, 3, 1]), (0.5, 2, [1, 1])])
def test_the_chunk_size_follows_the_free_gpu_memory(fits, count, sizes, image, monkeypatch):
    """Half the free memory over :func:`bytes_per_prompt` (at least one; the cap is tested with ``auto_chunk_size``)."""
    from segprompt.backends.sam import bytes_per_prompt

    pretend_cuda_available(monkeypatch, free_bytes=int(2 * fits * bytes_per_prompt(image.shape[:2])))
    with SimulatedCuda():
        segmenter = SamSegmenter(model=build_sam("tiny", seed=0), device="cuda")
        embedding = segmenter.embed(image)
        prompts = [Prompt(points=Points([[10.0 + k, 12.0]], [1])) for k in range(count)]
        assert [len(batch.indices) for batch in segmenter.predict_batches(embedding, prompts)] == sizes


def test_on_the_cpu_the_chunk_size_is_the_cpus(tiny_sam, image):
    prompts = [Prompt(points=Points([[10.0 + k, 12.0]], [1])) for k in range(9)]
    sizes = [len(batch.indices) for batch in tiny_sam.predict_batches(tiny_sam.embed(image), prompts)]
    assert sizes == [4, 4, 1]


def test_pointprompt_finetuning_on_the_gpu(image, object_mask, monkeypatch):
    from segprompt.pointprompt.finetune import FinetuneConfig, FinetuneExample, finetune_sam
    from segprompt.pointprompt.strategies import PointSet

    def run(device):
        segmenter = SamSegmenter(model=build_sam("tiny", seed=0), device=device)
        embedding = segmenter.embed(image)
        examples = [
            FinetuneExample.from_embedding(embedding, PointSet(np.array([[20.0 + 2 * k, 15.0 + k]]), np.zeros((0, 2))), object_mask)
            for k in range(4)
        ]
        return finetune_sam(segmenter.model, examples, FinetuneConfig(max_epochs=1, patience=1, learning_rate=1e-3))

    on_cpu = run("cpu")
    pretend_cuda_available(monkeypatch)
    with SimulatedCuda():
        on_gpu = run("cuda")
    assert on_gpu.iou_before == pytest.approx(on_cpu.iou_before)
    assert on_gpu.train_loss == pytest.approx(on_cpu.train_loss, rel=1e-5)


def test_prompt_tuning_trains_on_the_gpu(folders, tmp_path, monkeypatch):
    from segprompt.tuning import TrainConfig, TunedCLIPSeg, load_base, train
    from segprompt.tuning.data import Pair

    side = 32
    rng = np.random.default_rng(1)
    pairs = []
    for k in range(4):
        mask = np.zeros((side, side), bool)
        mask[4 + k : 20 + k, 6:26] = True
        pixels = (rng.random((side, side, 3)) * 80 + 120 * mask[..., None]).astype(np.uint8)
        pairs.append(Pair(f"p{k}", "coffee", pixels, mask, np.ones((side, side), bool)))
    base = load_base(folders["clipseg"])
    pretend_cuda_available(monkeypatch)
    with SimulatedCuda():
        base.model.to("cuda")
        torch.manual_seed(0)
        tuned = TunedCLIPSeg.create(base, "tiny", "coop", image_size=side)
        assert tuned.device == torch.device("cuda", 0)
        result = train(tuned, pairs[:2], pairs[2:], tmp_path / "run", TrainConfig(epochs=1, batch_size=2, lr=1e-2))
        segmenter = create("clipseg-tuned", checkpoint=tmp_path / "run", base=base, device="cuda")
        answer = segmenter.predict(segmenter.embed(pairs[0].image), Prompt(text=Text("coffee")))
    assert len(result.history) == 1 and np.isfinite(result.history[0]["val_loss"])
    assert answer.masks.shape == (1, side, side)


def test_video_propagation_on_the_gpu(folders, monkeypatch):
    from segprompt.volume.propagation import NEVER_STOP, VIDEO_PROPAGATORS
    from segprompt.volume.embeddings import plain_embed
    from segprompt.volume.reader import SliceImages, Volume
    from segprompt.volume.session import VolumeSession
    from segprompt.volume.synthetic import ellipsoid_volume

    volume, truth, _ = ellipsoid_volume((3, 36, 44))
    images = SliceImages(Volume(volume, "ZYX"))
    propagator_class = VIDEO_PROPAGATORS.get("sam2")

    def run(device, pretrained=None):
        propagator = propagator_class(images, model_dir=folders["sam2-video"], embed_image=plain_embed, device=device,
                                      pretrained=pretrained)  # fmt: skip
        session = VolumeSession(propagator, NEVER_STOP)
        session.prompt(1, 1, Prompt(box=Box.from_mask(truth[1])))
        session.propagate(1)
        return session.to_array(), propagator

    expected, on_cpu = run("cpu")
    twin = PretrainedModel(copy.deepcopy(on_cpu.model), on_cpu.processor, on_cpu.encoder.model_id)
    pretend_cuda_available(monkeypatch)
    with SimulatedCuda():
        labels, on_gpu = run("cuda", twin)
    assert on_gpu.device == torch.device("cuda", 0)
    assert np.mean(labels != expected) < 0.05
