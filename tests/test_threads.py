"""Concurrency: backends shared by threads (napari's preview worker and its semantic job) give single-thread results.

Nothing a backend does may depend on what another thread is doing with the
same model: no patched modules, no per-call state in the backend, decoder
contexts built once per embedding, no process-wide thread or RNG settings.
"""

from __future__ import annotations

import copy
import threading
from typing import Callable

import cv2
import numpy as np
import pytest
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from segprompt.backends import create
from segprompt.backends.base import Prediction
from segprompt.backends.persam import PerSamSegmenter
from segprompt.backends.sam import SamSegmenter
from segprompt.cache import EmbeddingCache
from segprompt.prompts import Box, Points, Prompt, VisualReference

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Calls per thread.
CALLS = 200
IMAGE_HW = (48, 64)
#: Channels of the narrow SAM's image embedding, prompt encoder and decoder (SAM's are 256).
WIDTH = 32


@pytest.fixture(scope="module")
def narrow_sam() -> SamSegmenter:
    """SAM's real modules and frames (1024 input, 64 x 64 grid, 256 x 256 logits) at a width of 32 channels.

    The tiny SAM's decoder is full width (about 0.1 s per decoding on CPU);
    this one decodes in milliseconds, so 2 x 200 concurrent calls and their
    single-thread references stay cheap while every code path is the same.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Sam(
            image_encoder=ImageEncoderViT(
                depth=1, embed_dim=WIDTH, img_size=1024, num_heads=1, patch_size=16, out_chans=WIDTH, window_size=14
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=WIDTH, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=4
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=WIDTH, mlp_dim=64, num_heads=2),
                transformer_dim=WIDTH,
                iou_head_depth=3,
                iou_head_hidden_dim=WIDTH,
            ),
        )
    return SamSegmenter(model=model.eval())


def _in_threads(*jobs: Callable[[], list]) -> list[list]:
    """Run the jobs at once, one thread each (started together); their results in order."""
    results: list[list | BaseException] = [[] for _ in jobs]
    barrier = threading.Barrier(len(jobs))

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = jobs[index]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def _assert_same(got: list[Prediction], expected: list[Prediction], what: str) -> None:
    assert len(got) == len(expected) == CALLS
    for index, (a, b) in enumerate(zip(got, expected)):
        assert np.array_equal(a.masks, b.masks), f"{what} call {index}: masks differ"
        assert np.array_equal(a.scores, b.scores), f"{what} call {index}: scores differ"
        assert np.array_equal(a.low_res_logits, b.low_res_logits), f"{what} call {index}: logits differ"


def test_two_threads_on_one_sam_and_one_persam_give_the_single_thread_results(narrow_sam, tmp_path):
    rng = np.random.default_rng(0)
    height, width = IMAGE_HW
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image[10:30, 20:45] = (200, 40, 40)
    embedding = narrow_sam.embed(image)  # SAM's and PerSAM's: they share it
    persam = PerSamSegmenter(sam=narrow_sam, cache=EmbeddingCache(tmp_path))  # references' embeddings from the cache

    clicks = []
    for _ in range(CALLS):
        count = int(rng.integers(1, 4))
        xy = np.stack([rng.uniform(0, width - 1, count), rng.uniform(0, height - 1, count)], axis=1)
        labels = np.concatenate([[1], rng.integers(0, 2, count - 1)])  # an include point says where the object is
        clicks.append(Prompt(points=Points(xy, labels)))
    references = []
    for _ in range(CALLS):
        mask = np.zeros(IMAGE_HW, bool)
        r0, c0 = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 8))
        mask[r0 : r0 + int(rng.integers(4, 20)), c0 : c0 + int(rng.integers(4, 20))] = True
        references.append(Prompt(reference=VisualReference(image, mask)))

    def sam_job(target) -> Callable[[], list[Prediction]]:
        # the exact decoder and, every other call, the fast one (the per-image context); one mask each:
        # upsampling to SAM's 1024 frame is most of a narrow SAM's time
        return lambda: [
            narrow_sam.predict(target, prompt, multimask=False) if index % 2 else narrow_sam.predict_best(target, prompt)
            for index, prompt in enumerate(clicks)
        ]

    def persam_job(target) -> Callable[[], list[Prediction]]:
        return lambda: [persam.predict(target, prompt) for prompt in references]

    expected_sam, expected_persam = sam_job(embedding)(), persam_job(embedding)()
    fresh = copy.deepcopy(embedding)  # no decoder context yet: both threads build it at once
    got_sam, got_persam = _in_threads(sam_job(fresh), persam_job(fresh))
    _assert_same(got_sam, expected_sam, "SAM")
    _assert_same(got_persam, expected_persam, "PerSAM")


def test_opencvs_random_generator_is_per_thread():
    """Seeding in one thread leaves another thread's sequence alone: cv::theRNG() is thread-local."""

    def draw() -> np.ndarray:
        values = np.zeros(5, np.float64)
        cv2.randu(values, 0.0, 1.0)
        return values.ravel().copy()

    cv2.setRNGSeed(5)
    alone = [draw(), draw()]
    cv2.setRNGSeed(5)
    first = draw()
    other = threading.Thread(target=lambda: (cv2.setRNGSeed(99), draw()))
    other.start()
    other.join()
    assert np.array_equal(first, alone[0]) and np.array_equal(draw(), alone[1])


def test_grabcut_is_deterministic_in_two_threads():
    """GrabCut's result depends on the RNG seed; seeded per call in the calling thread, threads cannot disturb it."""
    from skimage import data as skdata

    from segprompt.baselines import plain_grabcut

    classical = create("classical")
    images = [np.ascontiguousarray(skdata.coffee()[::4, ::4]), np.ascontiguousarray(skdata.astronaut()[::4, ::4])]
    embeddings = [classical.embed(image) for image in images]
    boxes = [Box(10, 10, 120, 90), Box(20, 5, 110, 100)]
    calls = 12

    def job(which: int) -> Callable[[], list[tuple[np.ndarray, ...]]]:
        def run() -> list[tuple[np.ndarray, ...]]:
            out = []
            for _ in range(calls):
                answer = classical.predict(embeddings[which], Prompt(box=boxes[which]))
                out.append((answer.masks, answer.scores, plain_grabcut(images[which], boxes[which], iterations=2)))
            return out

        return run

    expected = [job(0)()[0], job(1)()[0]]
    for which, answers in enumerate(_in_threads(job(0), job(1))):
        for answer in answers:
            assert all(np.array_equal(got, want) for got, want in zip(answer, expected[which]))
