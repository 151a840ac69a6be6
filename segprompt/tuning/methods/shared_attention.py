"""Shared-Attention prompts (TuneVLSeg): one sequence for both towers, mixed by attention.

Per depth, ``n_ctx`` shared vectors of width ``text_width + vision_width`` go
through their own pre-norm ``nn.TransformerEncoderLayer``; the first
``text_width`` channels become the text context, the rest the vision prompts.

``mix_tokens=True`` (ours): the layer attends across the ``n_ctx`` vectors, as
the method's name says. ``mix_tokens=False`` reproduces the reference code,
whose layer is built with PyTorch's default ``batch_first=False`` and fed a
``(1, n_ctx, width)`` tensor: it reads that as ``n_ctx`` sequences of length
1, so every vector attends only to itself (the attention reduces to
``out_proj(v_proj(norm(x)))``) and the vectors never mix.
"""

from __future__ import annotations

from torch import nn

from ...errors import SegpromptError
from . import register
from .base import DEFAULT_N_CTX, BaseDims, PromptMethod, PromptSet, check_depth, check_positive, random_vectors

HEADS = 16
FEEDFORWARD = 1536
DROPOUT = 0.25


@register
class SharedAttention(PromptMethod):
    name = "shared-attn"
    description = "shared text+vision vectors through a per-depth transformer layer, then split"
    paper_hyperparameters = {"mix_tokens": False}

    def __init__(
        self,
        dims: BaseDims,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        prompt_depth: int = 1,
        heads: int = HEADS,
        feedforward: int = FEEDFORWARD,
        dropout: float = DROPOUT,
        mix_tokens: bool = True,
    ) -> None:
        super().__init__()
        width = dims.text_width + dims.vision_width
        check_positive(self.name, "n_ctx", n_ctx)
        check_positive(self.name, "heads", heads)
        check_positive(self.name, "feedforward", feedforward)
        check_depth(self.name, prompt_depth, dims)
        if width % heads:
            raise SegpromptError(f"{self.name}: heads={heads} must divide the shared width {width} (text + vision)")
        if not 0.0 <= dropout < 1.0:
            raise SegpromptError(f"{self.name}: dropout={dropout} must be in [0, 1)")
        self.text_width = dims.text_width
        self.shared = random_vectors(prompt_depth, n_ctx, width)
        self.mixers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, heads, feedforward, dropout, batch_first=mix_tokens, norm_first=True)
            for _ in range(prompt_depth)
        )
        self.hyperparameters = {
            "n_ctx": n_ctx,
            "prompt_depth": prompt_depth,
            "heads": heads,
            "feedforward": feedforward,
            "dropout": dropout,
            "mix_tokens": mix_tokens,
        }

    def forward(self, image_features=None) -> PromptSet:
        # (1, n_ctx, width): one sequence of n_ctx tokens when batch_first, else n_ctx sequences of one token.
        mixed = [mixer(shared.unsqueeze(0))[0] for shared, mixer in zip(self.shared, self.mixers)]
        return PromptSet(
            text=[m[:, : self.text_width] for m in mixed],
            vision=[m[:, self.text_width :] for m in mixed],
        )
