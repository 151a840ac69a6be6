"""Architectures of the segment-anything models, built without loading weights.

``segment_anything.build_sam`` loads checkpoints with a bare ``torch.load``;
segprompt builds the same modules here and loads verified weights itself
(see :mod:`segprompt.checkpoints`).

Besides the three official variants, :data:`SAM_ARCHITECTURES` holds
``"tiny"``: part of the public testing API (see :mod:`segprompt.testing`),
with the real module types and interfaces (2 encoder blocks of width 64) at a
fraction of the cost. It has no official checkpoint: build it with random
weights (``build_sam("tiny", seed=0)``) or load your own file, for tests, CI
and smoke runs of the CLI (``--model-type tiny --checkpoint FILE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Mapping

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from ..errors import CheckpointError

PROMPT_EMBED_DIM = 256
IMAGE_SIZE = 1024
PATCH_SIZE = 16


@dataclass(frozen=True)
class SamArchitecture:
    """Image-encoder hyper-parameters of one SAM variant (the decoder is shared)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    #: Whether segment-anything released weights for it (:mod:`segprompt.checkpoints`).
    official: bool = True


SAM_ARCHITECTURES: dict[str, SamArchitecture] = {
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": SamArchitecture(64, 2, 2, (1,), official=False),  # testing API: random init or your own weights
}


def build_sam(
    model_type: str,
    state_dict: Mapping[str, torch.Tensor] | None = None,
    seed: int | None = None,
) -> Sam:
    """Build a SAM of ``model_type`` in eval mode.

    Args:
        model_type: a key of :data:`SAM_ARCHITECTURES`.
        state_dict: weights to load (strict); random initialisation when ``None``.
        seed: seeds the random initialisation (only used without ``state_dict``);
            torch's global generator is left as it was.

    Raises:
        CheckpointError: unknown ``model_type`` or weights that do not fit it.
    """
    try:
        arch = SAM_ARCHITECTURES[model_type]
    except KeyError:
        raise CheckpointError(f"unknown SAM model type {model_type!r}; known: {', '.join(SAM_ARCHITECTURES)}") from None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        sam = _build(arch)
    if state_dict is not None:
        try:
            sam.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"weights do not fit SAM {model_type!r}: {_mismatch(model_type, state_dict, exc)}") from exc
    return sam.eval()


def encoder_shape(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, int] | None:
    """``(embedding width, block count)`` of the image encoder in a SAM state dict; ``None`` when it has none."""
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is None:
        return None
    blocks = {key.split(".")[2] for key in state_dict if key.startswith("image_encoder.blocks.")}
    return int(patch.shape[0]), len(blocks)


def fitting_model_type(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The :data:`SAM_ARCHITECTURES` key whose image encoder has the width and depth of ``state_dict``'s."""
    shape = encoder_shape(state_dict)
    return next((name for name, arch in SAM_ARCHITECTURES.items() if (arch.embed_dim, arch.depth) == shape), None)


def _mismatch(model_type: str, state_dict: Mapping[str, torch.Tensor], exc: RuntimeError) -> str:
    """Why ``state_dict`` did not load as ``model_type``: the type it fits, else its encoder's shape, else torch's reason."""
    fits = fitting_model_type(state_dict)
    if fits is not None and fits != model_type:
        return f"they are SAM {fits!r} weights"
    shape = encoder_shape(state_dict)
    if fits is None and shape is not None:
        return (
            f"their image encoder ({shape[0]} wide, {shape[1]} blocks) matches no SAM model type "
            f"({', '.join(SAM_ARCHITECTURES)})"
        )
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _build(arch: SamArchitecture) -> Sam:
    embedding_side = IMAGE_SIZE // PATCH_SIZE
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.depth,
            embed_dim=arch.embed_dim,
            img_size=IMAGE_SIZE,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.num_heads,
            patch_size=PATCH_SIZE,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(arch.global_attn_indexes),
            window_size=14,
            out_chans=PROMPT_EMBED_DIM,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(embedding_side, embedding_side),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
