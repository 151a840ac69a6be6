"""CoCoOp: CoOp whose context is shifted per image (Zhou et al., CVPR 2022).

A meta-net per prompt depth, ``Linear(image_feature_dim -> hidden) -> ReLU ->
Linear(hidden -> text_width) -> LayerNorm``, maps the pooled image feature
(CLIPSeg's projected CLS token) to a bias added to every context vector of
that depth. The feature is L2-normalised first (CoCoOp's paper) unless
``normalize_features=False`` (TuneVLSeg's ``norm_image_features: false``);
``mlp="reference"`` builds the meta-net as TuneVLSeg does (see
:func:`~segprompt.tuning.methods.base.projection`; its LayerNorm has no bias).
"""

from __future__ import annotations

import torch
from torch import nn

from . import register
from .base import DEFAULT_N_CTX, BaseDims, PromptMethod, PromptSet, check_depth, check_positive, projection, text_context
from .coop import DEFAULT_CONTEXT_INIT

META_HIDDEN = 64


@register
class CoCoOp(PromptMethod):
    name = "cocoop"
    description = "CoOp plus an image-conditioned bias from a meta-net"
    needs_image_features = True
    paper_hyperparameters = {"normalize_features": False, "mlp": "reference"}

    def __init__(
        self,
        dims: BaseDims,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        prompt_depth: int = 1,
        context_init: str | None = DEFAULT_CONTEXT_INIT,
        meta_hidden: int = META_HIDDEN,
        normalize_features: bool = True,
        mlp: str = "ours",
    ) -> None:
        super().__init__()
        check_positive(self.name, "n_ctx", n_ctx)
        check_positive(self.name, "meta_hidden", meta_hidden)
        check_depth(self.name, prompt_depth, dims)
        self.context = text_context(n_ctx, prompt_depth, dims, context_init)
        self.meta_nets = nn.ModuleList(
            projection(dims.image_feature_dim, dims.text_width, meta_hidden, mlp, norm_bias=mlp != "reference")
            for _ in range(prompt_depth)
        )
        self.normalize_features = normalize_features
        self.hyperparameters = {
            "n_ctx": n_ctx,
            "prompt_depth": prompt_depth,
            "context_init": context_init,
            "meta_hidden": meta_hidden,
            "normalize_features": normalize_features,
            "mlp": mlp,
        }

    def forward(self, image_features: torch.Tensor | None = None) -> PromptSet:
        if image_features is None:
            raise ValueError("CoCoOp needs the (B, image_feature_dim) pooled image features")
        if self.normalize_features:
            image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        # (B, 1, text_width) bias + (n_ctx, text_width) context -> (B, n_ctx, text_width)
        return PromptSet(text=[ctx + net(image_features).unsqueeze(1) for ctx, net in zip(self.context, self.meta_nets)])
