"""Scoring a backend's answers to many prompts against the ground truth of one image.

The benchmark path: :func:`score_prompts` gives, for each of ``N`` prompts,
the IoU with the ground truth of the mask a user (or a paper's protocol) would
take from the backend's answer. Backends that declare
:class:`~segprompt.backends.base.BatchPredictor` (SAM, the transformers SAM family) decode the prompts in
batches and return masks on the model's device, where the ground truth is
uploaded once and the IoU counted; only ``N`` numbers come back to the host.
Any other backend is asked one :meth:`~segprompt.backends.base.Segmenter.predict`
per prompt, scored the same way. IoUs follow :func:`segprompt.metrics.iou`
(1.0 when both masks are empty; ``ignore`` pixels are left out of both).

Which candidate is scored (``select``), when the backend answers several
(``multimask=True``):

* ``"best"``: the highest predicted quality (SAM's predicted IoU), what a user sees;
* ``"first"``: ``masks[0]``, what the PointPrompt reference code scores;
* ``"oracle"``: the highest true IoU (an upper bound).

``multimask=False`` asks for the backend's single mask; :func:`selection_settings`
maps the protocol word ``"single"`` to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .backends.base import BatchPredictor, CandidateBatch, Embedding, Segmenter
from .progress import ProgressCallback, no_progress
from .prompts import Prompt

MaskSelection = Literal["best", "first", "oracle"]
MASK_SELECTIONS: tuple[str, ...] = ("best", "first", "oracle")
#: Protocol words for :func:`selection_settings`: a selection, or ``"single"`` (the single-mask output).
SELECTION_WORDS: tuple[str, ...] = (*MASK_SELECTIONS, "single")

#: Words summed at once by :func:`count_true`: 255 additions of 0/1 bytes cannot carry out of a byte.
_LANE_WORDS = 255


def selection_settings(word: str) -> tuple[bool, MaskSelection]:
    """``(multimask, select)`` for a protocol word of :data:`SELECTION_WORDS` (``"single"``: ``(False, "best")``)."""
    if word not in SELECTION_WORDS:
        raise ValueError(f"mask selection must be one of {', '.join(SELECTION_WORDS)}, got {word!r}")
    return (False, "best") if word == "single" else (True, word)  # type: ignore[return-value]


def count_true(masks: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` bool -> ``(...)`` int64 number of ``True`` pixels, on the masks' device.

    Reads the bool bytes (0 or 1) as int64 words of 8 pixels and sums up to
    255 words at a time, so each byte lane holds its own count without a
    carry; the lanes' bytes are summed last. On CPU this is several times
    faster than ``torch.count_nonzero``; on CUDA it is equally fast.
    """
    flat = masks.reshape(*masks.shape[:-2], -1).view(torch.uint8)
    flat = F.pad(flat, (0, (-flat.shape[-1]) % (8 * _LANE_WORDS)))
    lanes = flat.view(torch.int64).unflatten(-1, (-1, _LANE_WORDS)).sum(-1)
    return lanes.view(torch.uint8).sum(-1, dtype=torch.int64)


class MaskTarget:
    """A ground-truth mask for the IoU of predicted masks, uploaded to each device once.

    Build one per image and object and pass it to every :func:`score_prompts`
    call on that image (strategies, timesteps, single- and multimask): the
    ``(H, W)`` masks go to the device on first use only.

    Args:
        gt_mask: ``(H, W)`` ground truth, non-zero = object.
        ignore: optional ``(H, W)`` bool pixels left out of both masks.
        image_hw: the image's ``(H, W)``, which both must have.

    Raises:
        ValueError: ``gt_mask`` or ``ignore`` of another shape.
    """

    def __init__(self, gt_mask: np.ndarray, ignore: np.ndarray | None, image_hw: tuple[int, int]) -> None:
        gt = np.asarray(gt_mask) != 0
        if gt.shape != tuple(image_hw):
            raise ValueError(f"gt_mask shape {gt.shape} differs from the image shape {tuple(image_hw)}")
        keep = np.ones_like(gt)
        if ignore is not None:
            ignore = np.asarray(ignore, dtype=bool)
            if ignore.shape != gt.shape:
                raise ValueError(f"ignore shape {ignore.shape} differs from the image shape {gt.shape}")
            keep = ~ignore
        self._gt, self._keep = gt & keep, keep
        self.image_hw = tuple(gt.shape)
        self._on: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(gt, keep, |gt|)`` on ``device``."""
        if str(device) not in self._on:
            gt = torch.from_numpy(self._gt).to(device)
            self._on[str(device)] = (gt, torch.from_numpy(self._keep).to(device), count_true(gt))
        return self._on[str(device)]

    def iou(self, masks: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` bool masks -> ``(...)`` float64 IoU with the target, on the masks' device."""
        gt, keep, n_gt = self._tensors(masks.device)
        pred = masks & keep
        inter = count_true(pred & gt)
        union = count_true(pred) + n_gt - inter
        ratio = inter.double() / union.clamp_min(1).double()
        return torch.where(union == 0, torch.ones_like(ratio), ratio)


@dataclass
class PromptScores:
    """Result of :func:`score_prompts` for ``N`` prompts with up to ``K`` candidates each.

    Attributes:
        iou: ``(N,)`` float64 IoU of the selected mask with the ground truth.
        selected: ``(N,)`` int64 index of the scored candidate in ``0..K-1``.
        scores: ``(N, K)`` float32 predicted quality of every candidate (NaN
            where a backend answered a prompt with fewer candidates).
        low_res_logits: ``(N, L, L)`` float32 logits of the selected candidates
            (``keep_logits=True``, a backend that has them), else ``None``.
        n_exact: prompts the backend decoded again to be exact.
    """

    iou: np.ndarray
    selected: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray | None = None
    n_exact: int = 0

    @property
    def selected_scores(self) -> np.ndarray:
        """``(N,)`` float32 predicted quality of the scored candidates."""
        return self.scores[np.arange(len(self.selected)), self.selected]


def _predicted_batches(
    segmenter: Segmenter, embedding: Embedding, prompts: Sequence[Prompt], multimask: bool, select: str, keep_logits: bool
) -> Iterator[CandidateBatch]:
    """One :meth:`~segprompt.backends.base.Segmenter.predict` per prompt, as :class:`CandidateBatch` es of one."""
    for index, prompt in enumerate(prompts):
        prediction = segmenter.predict(embedding, prompt, multimask)
        count = len(prediction.scores)
        keep = np.arange(count) if select == "oracle" else np.array([prediction.best if select == "best" else 0])
        logits = prediction.low_res_logits
        yield CandidateBatch(
            indices=[index],
            masks=torch.from_numpy(prediction.masks[keep])[None],
            candidates=torch.from_numpy(keep)[None],
            scores=torch.from_numpy(prediction.scores)[None],
            low_res_logits=torch.from_numpy(logits[keep])[None] if keep_logits and logits is not None else None,
        )


def score_prompts(
    segmenter: Segmenter,
    embedding: Embedding,
    prompts: Sequence[Prompt],
    gt_mask: np.ndarray | MaskTarget,
    *,
    multimask: bool = True,
    select: MaskSelection = "best",
    ignore: np.ndarray | None = None,
    keep_logits: bool = False,
    exact: bool = False,
    chunk_size: int | None = None,
    progress: ProgressCallback = no_progress,
) -> PromptScores:
    """IoU with ``gt_mask`` of ``segmenter``'s answer to each of ``prompts`` on one image.

    With SAM: the same numbers as calling ``SamPredictor.predict`` for each
    prompt and scoring the selected mask with :func:`segprompt.metrics.iou`,
    much faster (batched decoding, only the scored masks upsampled, IoU on the
    device). Reuse one ``embedding`` for every strategy and timestep of an
    image, and one :class:`MaskTarget` for every call on the same object.

    On the model's device (a GPU included) the masks are decoded, thresholded
    and counted against the ground truth; only ``N`` IoUs, choices and
    scores (and the logits when kept) come back to the host, at the end
    (one copy per field).

    Args:
        segmenter: any backend; a :class:`~segprompt.backends.base.BatchPredictor` decodes in batches.
        embedding: from ``segmenter.embed`` (or an embedding cache).
        prompts: ``N`` prompts in original-image ``(x, y)`` pixels.
        gt_mask: ``(H, W)`` ground truth, non-zero = object, or a
            :class:`MaskTarget` (then ``ignore`` is part of it).
        multimask: the backend's several candidates (``True``) or its single mask.
        select: ``"best"``, ``"first"`` or ``"oracle"`` (see the module docstring).
        ignore: optional ``(H, W)`` bool pixels left out of the IoU.
        keep_logits: also return each selected candidate's low-resolution
            logits (to feed back as a mask prompt at the next timestep).
        exact: passed to :meth:`~segprompt.backends.base.BatchPredictor.predict_batches`
            (SAM: masks and choices equal ``SamPredictor``'s bit for bit);
            ``predict`` is exact anyway.
        chunk_size: prompts decoded together (batch predictors); ``None``:
            the backend's choice (SAM: 4 on the CPU, from the free memory on CUDA).
        progress: ``progress(done, N, message)`` after each batch.

    Returns:
        :class:`PromptScores` in the order of ``prompts``.

    Raises:
        UnsupportedPromptError, PromptError: as ``predict``, naming the prompt index.
        ValueError: embedding from another model, ``gt_mask`` / ``ignore`` of
            another shape, ``ignore`` with a :class:`MaskTarget`, unknown ``select``.
    """
    if select not in MASK_SELECTIONS:
        raise ValueError(f"select must be one of {', '.join(MASK_SELECTIONS)}, got {select!r}")
    if isinstance(gt_mask, MaskTarget):
        if ignore is not None:
            raise ValueError("ignore is part of a MaskTarget: build the target with it")
        if gt_mask.image_hw != tuple(embedding.image_hw):
            raise ValueError(f"the target's shape {gt_mask.image_hw} differs from the image shape {tuple(embedding.image_hw)}")
        target = gt_mask
    else:
        target = MaskTarget(gt_mask, ignore, embedding.image_hw)
    candidates = "all" if select == "oracle" else select
    if isinstance(segmenter, BatchPredictor):
        batches = segmenter.predict_batches(
            embedding, prompts, multimask=multimask, select=candidates, keep_logits=keep_logits, exact=exact,
            chunk_size=chunk_size,
        )
    else:
        segmenter.check_prompts(embedding, prompts)
        batches = _predicted_batches(segmenter, embedding, prompts, multimask, select, keep_logits)
    n_prompts = len(prompts)
    order: list[int] = []
    parts: dict[str, list[torch.Tensor]] = {"iou": [], "selected": [], "scores": [], "logits": []}
    n_exact = 0
    for batch in batches:
        with torch.inference_mode():  # stays on the device: no host transfer per batch
            batch_iou = target.iou(batch.masks)  # (B, K')
            column = batch_iou.argmax(dim=1) if select == "oracle" else torch.zeros_like(batch_iou[:, 0], dtype=torch.int64)
            rows = torch.arange(len(batch.indices), device=column.device)
            parts["iou"].append(batch_iou[rows, column])
            parts["selected"].append(batch.candidates[rows, column.to(batch.candidates.device)])
            parts["scores"].append(batch.scores.float())
            if keep_logits and batch.low_res_logits is not None:
                device = batch.low_res_logits.device
                parts["logits"].append(batch.low_res_logits[rows.to(device), column.to(device)].float())
        order.extend(batch.indices)
        n_exact += batch.n_exact
        progress(len(order), n_prompts, "scoring prompts")
    return _gathered(parts, order, n_prompts, keep_logits, n_exact)


def _gathered(
    parts: dict[str, list[torch.Tensor]], order: list[int], n_prompts: int, keep_logits: bool, n_exact: int
) -> PromptScores:
    """:class:`PromptScores` in prompt order from per-batch tensors (one host transfer per field)."""
    position = np.empty(n_prompts, np.intp)
    position[np.asarray(order, np.intp)] = np.arange(len(order))

    def host(name: str) -> list[np.ndarray]:
        return [tensor.cpu().numpy() for tensor in _concatenated(parts[name])]

    ious = np.concatenate(host("iou") or [np.zeros(0)])[position] if n_prompts else np.zeros(0)
    selected = np.concatenate(host("selected") or [np.zeros(0, np.int64)])[position] if n_prompts else np.zeros(0, np.int64)
    rows = [row for block in host("scores") for row in block]  # per prompt: (K,) of its backend's candidates
    width = max((len(row) for row in rows), default=0)
    table = np.full((n_prompts, width), np.nan, np.float32)
    for index, row in zip(order, rows):
        table[index, : len(row)] = row
    kept = None
    if keep_logits and n_prompts and len(parts["logits"]) == len(parts["iou"]):
        kept = np.concatenate(host("logits"))[position]
    return PromptScores(ious.astype(np.float64), selected.astype(np.int64), table, kept, n_exact)


def _concatenated(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """``tensors`` joined along the first axis where their other axes and devices agree (fewer host transfers)."""
    groups: list[list[torch.Tensor]] = []
    for tensor in tensors:
        if groups and groups[-1][0].shape[1:] == tensor.shape[1:] and groups[-1][0].device == tensor.device:
            groups[-1].append(tensor)
        else:
            groups.append([tensor])
    return [torch.cat(group) if len(group) > 1 else group[0] for group in groups]


def select_mask(
    segmenter: Segmenter, embedding: Embedding, prompt: Prompt, *, multimask: bool = True, select: str = "best"
) -> tuple[np.ndarray, float]:
    """``(mask (H, W) bool, predicted quality)`` of the candidate ``select`` (``"best"`` or ``"first"``) picks.

    The interactive path (one click, one mask): a batch predictor computes and
    upsamples only that candidate.
    """
    if select not in ("best", "first"):
        raise ValueError(f"select must be 'best' or 'first' without a ground truth, got {select!r}")
    if isinstance(segmenter, BatchPredictor):
        (batch,) = segmenter.predict_batches(embedding, [prompt], multimask=multimask, select=select)  # type: ignore[arg-type]
        score = batch.scores[0, batch.candidates[0, 0]]
        return batch.masks[0, 0].cpu().numpy(), float(score)
    prediction = segmenter.predict(embedding, prompt, multimask)
    index = prediction.best if select == "best" else 0
    return prediction.masks[index], float(prediction.scores[index])


__all__ = [
    "MASK_SELECTIONS",
    "SELECTION_WORDS",
    "MaskSelection",
    "MaskTarget",
    "PromptScores",
    "count_true",
    "score_prompts",
    "select_mask",
    "selection_settings",
]
