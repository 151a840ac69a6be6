"""Shared-Separate prompts (TuneVLSeg): small shared vectors, separate projections per tower.

Per depth, ``n_ctx`` shared vectors of width ``shared_dim`` are projected by
``Linear -> LayerNorm`` to the text width (text context) and by another
``Linear -> LayerNorm`` to the vision width (vision prompts).
``projection_norm=False`` drops the LayerNorms: the reference code's
projection is a plain ``nn.Linear`` (its ``intermediate_dim: null`` makes
``get_mlp_projection`` return one, whatever ``use_proj_norm`` says).
"""

from __future__ import annotations

from torch import nn

from . import register
from .base import DEFAULT_N_CTX, BaseDims, PromptMethod, PromptSet, check_depth, check_positive, projection, random_vectors

SHARED_DIM = 64


@register
class SharedSeparate(PromptMethod):
    name = "shared-sep"
    description = "shared low-dimensional vectors with separate text and vision projections"
    paper_hyperparameters = {"projection_norm": False}

    def __init__(
        self,
        dims: BaseDims,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        prompt_depth: int = 1,
        shared_dim: int = SHARED_DIM,
        projection_norm: bool = True,
    ) -> None:
        super().__init__()
        check_positive(self.name, "n_ctx", n_ctx)
        check_positive(self.name, "shared_dim", shared_dim)
        check_depth(self.name, prompt_depth, dims)
        self.shared = random_vectors(prompt_depth, n_ctx, shared_dim)

        def project(width: int) -> nn.Module:
            return projection(shared_dim, width, None) if projection_norm else nn.Linear(shared_dim, width)

        self.to_text = nn.ModuleList(project(dims.text_width) for _ in range(prompt_depth))
        self.to_vision = nn.ModuleList(project(dims.vision_width) for _ in range(prompt_depth))
        self.hyperparameters = {
            "n_ctx": n_ctx,
            "prompt_depth": prompt_depth,
            "shared_dim": shared_dim,
            "projection_norm": projection_norm,
        }

    def forward(self, image_features=None) -> PromptSet:
        return PromptSet(
            text=[proj(shared) for shared, proj in zip(self.shared, self.to_text)],
            vision=[proj(shared) for shared, proj in zip(self.shared, self.to_vision)],
        )
