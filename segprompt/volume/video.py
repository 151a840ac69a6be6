"""Propagation by the memory of SAM 2's and SAM 3's video models (``Sam2VideoModel``, ``Sam3TrackerVideoModel``).

A video model segments frame ``k`` from its image features fused, by memory
attention, with what it remembers of the object: the prompted (conditioning)
frames and the last few tracked frames. transformers drives it through an
inference session (``Sam2VideoProcessor.init_video_session``,
``add_inputs_to_inference_session``, ``model(inference_session=...,
frame_idx=k, reverse=...)``, ``propagate_in_video_iterator``); here the
slices of a volume are its frames, and the session is driven frame by frame
so that runs can stop where the object ends and start again from a correction.

What is ours, and why:

* one inference session per object (object id = the object's label): a run
  of one object never re-runs, and so never changes, the others; the frames'
  image features are shared between them anyway (next point);
* each frame's image features come from
  :class:`~segprompt.volume.embeddings.SliceEmbeddings` (the model's own
  ``get_image_features``, kept in memory and in the embedding cache on disk),
  put into the session's feature cache before the model runs on that frame:
  the encoder runs once per slice, not once per run and object; the
  positional encodings, the same for every frame, are kept once;
* the session's frames are read lazily (``num_frames`` is the volume's
  length, a frame's pixels are made only if its features are missing): a
  2 GB volume is never preprocessed whole;
* a prompt on a slice the object was tracked on becomes a fresh conditioning
  frame (the old tracked output there is dropped first), so a correction is an
  anchor, as in :class:`~segprompt.volume.session.VolumeSession`;
* ``high_res_masks`` (``S x S`` float per frame and object) are dropped from
  the stored outputs once the memory encoder has used them; the memory uses
  only ``maskmem_features``, ``maskmem_pos_enc`` and ``object_pointer``.

Masks are the model's logits upsampled by the processor's
``post_process_masks`` and thresholded at 0; the score is the model's object
presence probability (``sigmoid(object_score_logits)``). Prompts: points
and / or a box, or a binary mask, on a slice (the model takes a mask or
points/box on one frame, not both).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from ..backends import get_backend_class
from ..backends.base import Embedding, Prediction, Segmenter
from ..cache import EmbeddingCache
from ..devices import AUTO, resolve_device
from ..errors import SegpromptError, UnsupportedPromptError
from ..hub import PretrainedModel, load_pretrained
from ..progress import ProgressCallback, no_progress
from ..prompts import Prompt
from .embeddings import IN_MEMORY_SLICES, EmbedImage, SliceEmbeddings
from .propagation import VIDEO_PROPAGATORS, Propagator, SliceResult

#: Prompt kinds the video models take on a slice.
VIDEO_PROMPT_KINDS = frozenset({"points", "box", "mask"})


def check_video_prompt(prompt: Prompt, method: str) -> None:
    """Raise :class:`UnsupportedPromptError` unless ``prompt`` is points and / or a box, or a binary mask alone."""
    rejected = sorted(prompt.kinds() - VIDEO_PROMPT_KINDS)
    if rejected or prompt.is_empty():
        raise UnsupportedPromptError(f"{method} takes points, a box or a mask on a slice, not {', '.join(rejected) or 'an empty prompt'}")
    if prompt.mask is not None:
        if prompt.points is not None or prompt.box is not None:
            raise UnsupportedPromptError(f"{method} takes a mask or points / a box on one slice, not both")
        if prompt.mask.kind != "binary":
            raise UnsupportedPromptError(f"{method} takes a binary mask, not low-resolution logits")


@dataclass(eq=False)
class VideoFrameEmbedding(Embedding):
    """A video model's features of one frame.

    Attributes:
        vision_feats: the ``get_image_features`` feature maps, ``(h * w, 1, C)``
            per level (the first two already projected by the decoder's
            ``conv_s0`` / ``conv_s1``), as the model's session caches them.
    """

    vision_feats: tuple[torch.Tensor, ...]


class VideoFrameEncoder(Segmenter):
    """A video model's image encoder behind the :class:`Segmenter` interface, so frames embed and cache like images.

    ``embed`` returns the model's ``get_image_features`` feature maps
    (``(h * w, 1, C)`` per level, the first two already projected by the
    decoder's ``conv_s0`` / ``conv_s1``); it answers no prompt.
    """

    accepts = frozenset()
    description = "a video model's frame encoder (used by volume propagation)"

    def __init__(self, backend: str, pretrained: PretrainedModel, device: torch.device) -> None:
        self.name = f"{backend}-video-frames"  # its own cache entries, apart from the image backend's
        self.model = pretrained.model
        self.processor = pretrained.processor
        self.device = device
        self._model_id = pretrained.model_id
        #: The positional encodings of the feature maps (the same for every frame), once a frame was encoded.
        self.positions: list[torch.Tensor] | None = None

    @property
    def model_id(self) -> str:
        return self._model_id

    def pixels(self, image: np.ndarray) -> torch.Tensor:
        """``(3, S, S)`` float32 pixel values of one ``(H, W, 3)`` uint8 frame, by the processor's video processor."""
        processed = self.processor.video_processor(videos=image[None], return_tensors="pt")
        return processed.pixel_values_videos[0, 0]

    def features(self, image: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(feature maps, positional encodings)`` of one frame, as the model's session caches them."""
        with torch.inference_mode():
            out = self.model.get_image_features(self.pixels(self._rgb(image))[None].to(self.device), return_dict=True)
        if self.positions is None:
            self.positions = list(out.fpn_position_encoding)
        return list(out.fpn_hidden_states), list(out.fpn_position_encoding)

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> VideoFrameEmbedding:
        rgb = self._rgb(image)
        progress(0, 1, f"{self.name}: encoding the frame")
        maps, _ = self.features(rgb)
        progress(1, 1, f"{self.name}: frame encoded")
        feats = tuple(t.detach().cpu() for t in maps)
        return VideoFrameEmbedding(self.name, self.model_id, (int(rgb.shape[0]), int(rgb.shape[1])), rgb, feats)

    def _predict(self, embedding: Embedding, prompt: Prompt, multimask: bool) -> Prediction:
        raise UnsupportedPromptError(f"{self.name} encodes frames for propagation; it answers no prompt")


@functools.cache
def _lazy_session_class(base: type) -> type:
    """``base`` (a transformers video inference session) whose frames come from a function, not a preprocessed video."""

    class LazyFramesSession(base):  # type: ignore[misc, valid-type]
        def __init__(self, frames: Any, n_frames: int, **kwargs: Any) -> None:
            super().__init__(video=None, **kwargs)
            self._frames = frames
            self._n_frames = n_frames

        @property
        def num_frames(self) -> int:
            return self._n_frames

        def get_frame(self, frame_idx: int) -> torch.Tensor:
            return self._frames(frame_idx).to(self.inference_device)

    LazyFramesSession.__name__ = LazyFramesSession.__qualname__ = f"LazyFrames{base.__name__}"
    return LazyFramesSession


class VideoPropagator(Propagator):
    """Propagation by a transformers video model (see the module docstring).

    Args:
        images: the slices (``(H, W, 3)`` uint8 each, e.g.
            :class:`~segprompt.volume.reader.SliceImages`).
        model_dir: a local model folder; default the backend's hub id for
            ``variant`` (:mod:`segprompt.hub`). The image backend's folder
            (e.g. ``facebook/sam2.1-hiera-tiny``) holds the video model too.
        variant: released size (the image backend's ``hub_ids`` keys).
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
        pretrained: an already loaded model and processor (tests: random init).
        embed_image: how frames are embedded (default: :class:`~segprompt.cache.EmbeddingCache`).
        in_memory: frame features kept in memory.
    """

    #: The backend whose weights this uses.
    name: ClassVar[str]

    def __init__(
        self,
        images: Sequence[np.ndarray],
        model_dir: str | Path | None = None,
        *,
        variant: str | None = None,
        device: str | torch.device = AUTO,
        pretrained: PretrainedModel | None = None,
        embed_image: EmbedImage | None = None,
        in_memory: int = IN_MEMORY_SLICES,
    ) -> None:
        self.device = resolve_device(device)
        if pretrained is None:
            backend = get_backend_class(self.name)
            variant = backend.default_variant if variant is None else variant
            if variant not in backend.hub_ids:
                raise SegpromptError(f"{self.name}: unknown variant {variant!r}; known: {', '.join(backend.hub_ids)}")
            model_class, processor_class = self.model_classes()
            pretrained = load_pretrained(
                model_class, processor_class, backend.hub_ids[variant], model_dir, access_note=backend.access_note
            )
        self.model = pretrained.model.to(self.device).eval()
        self.processor = pretrained.processor
        self.encoder = VideoFrameEncoder(self.name, PretrainedModel(self.model, self.processor, pretrained.model_id), self.device)
        self.embeddings = SliceEmbeddings(self.encoder, images, embed_image or EmbeddingCache().embed, in_memory)
        self.method = f"{self.name} video memory"
        self._sessions: dict[int, Any] = {}

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        """``(video model class, video processor class)``."""
        raise NotImplementedError

    @classmethod
    def session_class(cls) -> type:
        """The transformers inference-session class of the model."""
        raise NotImplementedError

    # -- sessions and features -----------------------------------------------

    def _session(self, label: int) -> Any:
        if label not in self._sessions:
            height, width = self.image_hw
            self._sessions[label] = _lazy_session_class(self.session_class())(
                lambda index: self.encoder.pixels(np.asarray(self.embeddings.images[index])),
                self.n_slices,
                video_height=height,
                video_width=width,
                inference_device=self.device,
                inference_state_device=self.device,
                video_storage_device="cpu",
                dtype=torch.float32,
            )
        return self._sessions[label]

    def _features(self, index: int) -> dict[str, list[torch.Tensor]]:
        """The session-cache entry of slice ``index``: its feature maps and the (shared) positional encodings."""
        embedding = self.embeddings.get(index)
        maps = [level.to(self.device) for level in embedding.vision_feats]
        if self.encoder.positions is None:  # every frame came from the disk cache: encode one for them
            self.encoder.features(embedding.image)
        return {"vision_feats": maps, "vision_pos_embeds": self.encoder.positions}

    def _forward(self, label: int, index: int, reverse: bool) -> SliceResult:
        session = self._session(label)
        session.cache.cache_vision_features(index, self._features(index))
        with torch.inference_mode():
            out = self.model(inference_session=session, frame_idx=index, reverse=reverse)
        for stored in session.output_dict_per_obj[0].values():
            if index in stored:
                stored[index].pop("high_res_masks", None)
        logits = self.processor.post_process_masks([out.pred_masks], original_sizes=[list(self.image_hw)], binarize=False)[0]
        score = torch.sigmoid(out.object_score_logits.float()).reshape(-1)[0]
        return SliceResult((logits[0, 0] > 0).cpu().numpy(), float(score), self.method)

    def _has_output(self, label: int, index: int) -> bool:
        outputs = self._session(label).output_dict_per_obj.get(0, {})
        return any(index in stored for stored in outputs.values())

    # -- Propagator ----------------------------------------------------------

    def segment(self, label: int, index: int, prompt: Prompt) -> SliceResult:
        check_video_prompt(prompt, self.method)
        if prompt.mask is not None:
            return self._condition_on_mask(label, index, prompt.mask.data)
        self.discard(label, [index])
        inputs: dict[str, Any] = {}
        if prompt.points is not None:
            inputs["input_points"] = [[prompt.points.xy.tolist()]]
            inputs["input_labels"] = [[prompt.points.labels.tolist()]]
        if prompt.box is not None:
            inputs["input_boxes"] = [[prompt.box.as_array().tolist()]]
        self.processor.add_inputs_to_inference_session(self._session(label), frame_idx=index, obj_ids=label, **inputs)
        return self._forward(label, index, reverse=False)

    def _condition_on_mask(self, label: int, index: int, mask: np.ndarray) -> SliceResult:
        """Make ``mask`` object ``label``'s conditioning frame on slice ``index`` (the model takes it as its output)."""
        self.discard(label, [index])
        session = self._session(label)
        self.processor.add_inputs_to_inference_session(session, frame_idx=index, obj_ids=label, input_masks=np.asarray(mask, bool))
        return self._forward(label, index, reverse=False)

    def anchor_mask(self, label: int, index: int, mask: np.ndarray) -> None:
        self._condition_on_mask(label, index, mask)

    def start(self, label: int, index: int, result: SliceResult) -> None:
        if not self._has_output(label, index):
            self.anchor_mask(label, index, result.mask)

    def step(self, index: int, previous: Mapping[int, SliceResult], reverse: bool) -> dict[int, SliceResult]:
        return {label: self._forward(label, index, reverse) for label in previous}

    def discard(self, label: int, indices: list[int]) -> None:
        session = self._sessions.get(label)
        if session is None or 0 not in session.output_dict_per_obj:
            return
        for index in indices:
            for stored in session.output_dict_per_obj[0].values():
                stored.pop(index, None)
            session.frames_tracked_per_obj[0].pop(index, None)

    def forget(self, label: int) -> None:
        self._sessions.pop(label, None)


@VIDEO_PROPAGATORS.register
class Sam2VideoPropagator(VideoPropagator):
    """SAM 2.1's video model (``Sam2VideoModel``, ``Sam2VideoProcessor``); weights of the ``sam2`` backend."""

    name = "sam2"

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        return Sam2VideoModel, Sam2VideoProcessor

    @classmethod
    def session_class(cls) -> type:
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        return Sam2VideoInferenceSession


@VIDEO_PROPAGATORS.register
class Sam3TrackerVideoPropagator(VideoPropagator):
    """SAM 3's tracker with memory (``Sam3TrackerVideoModel``, ``Sam3TrackerVideoProcessor``); weights of ``sam3-tracker``."""

    name = "sam3-tracker"

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        from transformers import Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

        return Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

    @classmethod
    def session_class(cls) -> type:
        from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import Sam3TrackerVideoInferenceSession

        return Sam3TrackerVideoInferenceSession


__all__ = [
    "check_video_prompt",
    "Sam2VideoPropagator",
    "Sam3TrackerVideoPropagator",
    "VIDEO_PROMPT_KINDS",
    "VideoFrameEmbedding",
    "VideoFrameEncoder",
    "VideoPropagator",
]
