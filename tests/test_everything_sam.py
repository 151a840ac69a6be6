"""SAM-like everything generators against ``segment_anything.SamAutomaticMaskGenerator``.

Three levels:

* the procedure (:func:`segprompt.everything.amg.automatic_masks`: filters, crops, edge test, NMS, small regions)
  against the reference on synthetic candidates: the reference generator's predictor is replaced, on that one
  generator object, by one that answers every point with three discs around it (a few holes and islands
  included), and our procedure decodes the same discs. Random-init SAMs give masks spanning the whole image,
  which box NMS reduces to one, so only synthetic masks exercise every step at once;
* the ``sam`` generator against the reference on the same random-init SAM (a small custom one: the real
  module types with a 32-wide decoder, so the reference's exact decoder runs in seconds) on a non-square image,
  with the thresholds low and NMS off so that 30 masks survive: bit for bit with ``exact=True``; the default
  re-associated decoder gives the same masks and stability scores and predicted IoUs within float rounding;
* the SAM family (tiny random-init sam2, sam-hq, sam3-tracker, edgetam) through ``predict_batches``: every
  record is one of ``predict``'s candidates for its point, with its score.
"""

from __future__ import annotations

import re
from functools import partial

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from segprompt.backends import create
from segprompt.backends.sam import SamSegmenter
from segprompt.errors import SegpromptError
from segprompt.everything import GENERATORS, everything_backends, everything_settings, segment_everything
from segprompt.everything.amg import Candidates, SamEverything, automatic_masks
from segprompt.everything.sam import SamGenerator
from segprompt.prompts import Points, Prompt

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def discs_image(height: int = 192, width: int = 256) -> np.ndarray:
    """A non-square RGB image: five coloured discs on grey."""
    image = np.full((height, width, 3), 90, np.uint8)
    rows, cols = np.ogrid[:height, :width]
    for row, col, radius, colour in [(40, 50, 22, (230, 40, 40)), (60, 180, 28, (40, 220, 60)), (140, 70, 25, (40, 60, 230)),
                                     (130, 200, 20, (240, 230, 50)), (100, 120, 15, (250, 250, 250))]:
        image[(rows - row) ** 2 + (cols - col) ** 2 <= radius**2] = colour
    return image


def assert_same_records(records, reference: list[dict], exact: bool = True) -> None:
    """Our :class:`MaskRecords` are the reference's, field by field, in its order."""
    assert len(records) == len(reference)
    for i, expected in enumerate(reference):
        np.testing.assert_array_equal(records.masks[i], expected["segmentation"], err_msg=f"mask {i}")
        x0, y0, x1, y1 = records.boxes[i]
        assert expected["bbox"] == [x0, y0, x1 - 1 - x0, y1 - 1 - y0], i  # its boxes' right/bottom are inclusive
        assert expected["area"] == records.masks[i].sum()
        assert expected["point_coords"] == [records.points[i].tolist()]
        cx0, cy0, cx1, cy1 = records.crop_boxes[i].tolist()
        assert expected["crop_box"] == [cx0, cy0, cx1 - cx0, cy1 - cy0]
        if exact:
            assert expected["predicted_iou"] == records.predicted_iou[i] and expected["stability_score"] == records.stability_score[i]
        else:  # the re-associated decoder's rounding
            assert expected["predicted_iou"] == pytest.approx(records.predicted_iou[i], abs=1e-6)
            assert expected["stability_score"] == pytest.approx(records.stability_score[i], abs=1e-6)


# -- the procedure on synthetic candidates --------------------------------------------------------------------


def disc_logits(points: np.ndarray, image_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 3, H, W)`` logits of three discs around each ``(x, y)`` point and ``(B, 3)`` predicted IoUs.

    Radii 5-9, 12-20 and 25-41 px depend on the point; logits fall by 1/4 per pixel from the rim, so small
    discs are less stable. Fixed 2 x 2 squares punch holes (and add islands) where they meet a disc.
    """
    height, width = image_hw
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij")
    squares = (rows % 17 < 2) & (cols % 23 < 2)
    logits, ious = [], []
    for x, y in np.asarray(points, np.float64):
        jitter = (np.sin(0.37 * x + 0.11 * y) + 1) / 2
        distance = torch.sqrt((cols - x) ** 2 + (rows - y) ** 2)
        candidates = []
        for radius in (5 + 4 * jitter, 12 + 8 * jitter, 25 + 16 * jitter):
            logit = (radius - distance) / 4
            logit[squares & (distance < radius + 6)] *= -1  # holes inside a disc, islands just outside
            candidates.append(logit)
        logits.append(torch.stack(candidates))
        ious.append([(np.cos(0.13 * x - 0.29 * y + k) + 1) / 2 for k in range(3)])
    return torch.stack(logits).float(), torch.tensor(ious, dtype=torch.float32)


class DiscPredictor:
    """Stands in for the reference's ``SamPredictor``: the points as given, answered by :func:`disc_logits`."""

    class transform:  # noqa: N801 - the attribute the reference reads
        @staticmethod
        def apply_coords(coords: np.ndarray, original_size) -> np.ndarray:
            return coords.astype(float)

    def __init__(self, mask_threshold: float) -> None:
        self.model = type("Model", (), {"mask_threshold": mask_threshold})()
        self.device = torch.device("cpu")

    def set_image(self, image: np.ndarray) -> None:
        self.image_hw = image.shape[:2]

    def reset_image(self) -> None:
        pass

    def predict_torch(self, point_coords, point_labels, multimask_output, return_logits):
        assert multimask_output and return_logits and (point_labels == 1).all()
        masks, ious = disc_logits(point_coords[:, 0].numpy(), self.image_hw)
        return masks, ious, None


class DiscDecoder:
    """Our :class:`~segprompt.everything.amg.PointDecoder` of the same discs (already at image resolution)."""

    def __init__(self, image_hw: tuple[int, int]) -> None:
        self.image_hw = image_hw

    def decode(self, points: np.ndarray, min_iou: float | None) -> Candidates:
        logits, ious = disc_logits(points, self.image_hw)
        iou, logits = ious.flatten(), logits.flatten(0, 1)
        index = torch.nonzero(iou > (-np.inf if min_iou is None else min_iou)).flatten()
        return Candidates(3, index, iou[index], logits[index])

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        return low_res


SYNTHETIC = [
    dict(points_per_side=8, points_per_batch=7, box_nms_thresh=0.5),
    dict(points_per_side=6, points_per_batch=10, crop_n_layers=1, min_mask_region_area=6, mask_threshold=0.25),
    dict(points_per_side=8, points_per_batch=64, crop_n_layers=2, crop_n_points_downscale_factor=2, min_mask_region_area=6,
         pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.5, crop_overlap_ratio=0.2),
]


@pytest.mark.parametrize("options", SYNTHETIC)
def test_the_procedure_gives_the_references_records_on_synthetic_candidates(tiny_sam_model, options):
    image = discs_image(100, 140)
    settings = SamEverything(**{"pred_iou_thresh": 0.4, "stability_score_thresh": 0.6, **options})
    reference = SamAutomaticMaskGenerator(tiny_sam_model, **{k: v for k, v in vars(settings).items() if k not in ("mask_threshold", "exact")})
    reference.predictor = DiscPredictor(settings.mask_threshold)  # this generator object only
    expected = reference.generate(image)

    def open_decoder(crop_box):
        x0, y0, x1, y1 = crop_box
        return DiscDecoder((y1 - y0, x1 - x0))

    messages = []
    records = automatic_masks(image.shape[:2], open_decoder, settings, lambda d, t, m: messages.append((d, t, m)))
    assert len(expected) >= 5
    assert_same_records(records, expected)
    assert messages[-1][0] == messages[-1][1] and messages[-1][2].endswith(f"{len(records)} masks")
    if settings.crop_n_layers:
        assert len({tuple(c) for c in records.crop_boxes}) > 1  # masks of crops survived the crop NMS


# -- SAM against the reference --------------------------------------------------------------------------------


def small_sam(seed: int = 0, width: int = 32) -> Sam:
    """A random-init SAM of segment-anything's module types, its decoder ``width`` wide instead of 256."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = Sam(
            image_encoder=ImageEncoderViT(
                depth=1, embed_dim=32, img_size=1024, mlp_ratio=2, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                num_heads=1, patch_size=16, qkv_bias=True, use_rel_pos=False, global_attn_indexes=[0], window_size=14,
                out_chans=width,
            ),
            prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=4),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=64, num_heads=2),
                transformer_dim=width,
                iou_head_depth=3,
                iou_head_hidden_dim=32,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    return sam.eval()


#: Random-init predicted IoUs lie within +-0.25 and logits within +-0.3: thresholds low, and NMS off (every
#: random-init mask spans the image, so box NMS would keep one); crop layers drop every crop mask at crop edges.
LOW_THRESHOLDS = dict(
    points_per_side=4, points_per_batch=5, pred_iou_thresh=0.01, stability_score_thresh=0.3, stability_score_offset=0.01,
    box_nms_thresh=1.0, crop_nms_thresh=1.0, crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=30,
)


@pytest.fixture(scope="module")
def small_setup():
    model = small_sam()
    image = discs_image()
    expected = SamAutomaticMaskGenerator(model, **LOW_THRESHOLDS).generate(image)
    segmenter = SamSegmenter(model=model)
    return segmenter, segmenter.embed(image), expected


def test_sam_generator_equals_sam_automatic_mask_generator_bit_for_bit(small_setup):
    segmenter, embedding, expected = small_setup
    records = SamGenerator.records(segmenter, embedding, SamEverything(**LOW_THRESHOLDS, exact=True))
    assert len(expected) >= 20
    assert_same_records(records, expected)


def test_the_fast_decoder_gives_the_same_masks_within_rounding(small_setup):
    segmenter, embedding, expected = small_setup
    records = SamGenerator.records(segmenter, embedding, SamEverything(**LOW_THRESHOLDS))
    assert_same_records(records, expected, exact=False)
    instances = segment_everything(segmenter, embedding, everything_settings("sam", **LOW_THRESHOLDS))
    np.testing.assert_array_equal(instances.masks, records.masks)
    np.testing.assert_array_equal(instances.scores, records.predicted_iou)
    np.testing.assert_array_equal(instances.boxes, records.boxes)


def test_points_without_a_candidate_above_the_threshold_are_never_upscaled(small_setup):
    from segprompt.backends.sam_decoder import decode_masks, decode_scoring_above

    segmenter, embedding, _ = small_setup
    model = segmenter.model
    points = torch.tensor([[[100.0, 80.0]], [[600.0, 300.0]], [[900.0, 700.0]], [[20.0, 700.0]]], dtype=torch.float64)
    with torch.inference_mode():
        sparse, _ = model.prompt_encoder(points=(points, torch.ones((4, 1), dtype=torch.int)), boxes=None, masks=None)
    context = embedding.decoder_context(model)
    for exact in (True, False):
        every, scores, _ = decode_masks(model, context, sparse, None, multimask=True, exact=exact, input_hw=embedding.input_hw)
        threshold = float(scores.max(dim=1).values.median())
        low_res, above, prompts = decode_scoring_above(model, context, sparse, threshold, exact=exact, input_hw=embedding.input_hw)
        assert torch.equal(above, scores)
        assert prompts.tolist() == torch.nonzero((scores > threshold).any(dim=1)).flatten().tolist() and 0 < len(prompts) < 4
        assert torch.equal(low_res, every[prompts])
        none, _, nothing = decode_scoring_above(model, context, sparse, 10.0, exact=exact, input_hw=embedding.input_hw)
        assert none.shape == (0, 3, *every.shape[2:]) and not len(nothing)


# -- the SAM family through predict_batches ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sam2", "sam-hq", "sam3-tracker", "edgetam"])
def test_family_records_are_predicts_candidates(backend):
    from segprompt import testing

    make = {"sam2": testing.random_sam2, "sam-hq": testing.random_sam_hq, "sam3-tracker": testing.random_sam3_tracker,
            "edgetam": testing.random_edgetam}[backend]
    segmenter = create(backend, pretrained=make("tiny", 0))
    image = discs_image(60, 90)
    embedding = segmenter.embed(image)
    settings = everything_settings(backend, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                   box_nms_thresh=1.0, exact=True)
    records = GENERATORS.get(backend).records(segmenter, embedding, settings)
    assert len(records) == 12  # 4 points x 3 candidates: no filter, NMS off
    for i in range(len(records)):
        prediction = segmenter.predict(embedding, Prompt(points=Points(records.points[i][None], [1])))
        (candidate,) = np.flatnonzero(prediction.scores == records.predicted_iou[i])  # NMS sorted them by score
        np.testing.assert_array_equal(records.masks[i], prediction.masks[candidate])
    # the predicted-IoU filter keeps exactly the candidates above it
    threshold = float(np.median(records.predicted_iou))
    kept = GENERATORS.get(backend).records(segmenter, embedding, SamEverything(**{**vars(settings), "pred_iou_thresh": threshold}))
    assert sorted(kept.predicted_iou.tolist()) == sorted(s for s in records.predicted_iou.tolist() if s > threshold)


# -- settings ---------------------------------------------------------------------------------------------


def test_every_sam_like_backend_has_the_generator_and_settings_are_checked():
    assert {"sam", "sam2", "sam-hq", "sam3-tracker", "edgetam"} <= set(everything_backends())
    assert everything_settings("sam") == SamEverything()
    assert SamEverything().points_per_side == 32 and SamEverything().pred_iou_thresh == 0.88
    for options, message in (
        (dict(points_per_side=0), "points_per_side must be an integer >= 1"),
        (dict(pred_iou_thresh=1.5), "pred_iou_thresh must lie in [0, 1]"),
        (dict(box_nms_thresh=0.0), "box_nms_thresh must lie in (0, 1]"),
        (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio must lie in [0, 1)"),
        (dict(points_per_side=4, crop_n_layers=3, crop_n_points_downscale_factor=2), "leaves no point on layer 3"),
        (dict(stability_score_offset=-1.0), "stability_score_offset must be >= 0"),
    ):
        with pytest.raises(SegpromptError, match=re.escape(message)):
            everything_settings("sam", **options)
