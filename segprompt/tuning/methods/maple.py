"""MaPLe: multi-modal prompts coupled text -> vision (Khattak et al., CVPR 2023).

The text side is CoOp's (deep) context; at every depth an MLP
``Linear(text_width -> hidden) -> ReLU -> Linear(hidden -> vision_width) ->
LayerNorm`` maps that depth's text vectors to the vision prompts of the same
depth, so the two towers are prompted by one set of parameters.
``mlp="reference"`` builds the couplings as TuneVLSeg does (see
:func:`~segprompt.tuning.methods.base.projection`).
"""

from __future__ import annotations

from torch import nn

from . import register
from .base import (
    DEFAULT_DEEP_DEPTH,
    DEFAULT_N_CTX,
    BaseDims,
    PromptMethod,
    PromptSet,
    check_depth,
    check_positive,
    projection,
    text_context,
)
from .coop import DEFAULT_CONTEXT_INIT

COUPLING_HIDDEN = 64


@register
class MaPLe(PromptMethod):
    name = "maple"
    description = "deep text context mapped by per-depth MLPs to vision prompts"
    # TuneVLSeg: depth 1 (its configs' default), random context (every MaPLe script passes context_initializer=null).
    paper_hyperparameters = {"prompt_depth": 1, "context_init": None, "mlp": "reference"}

    def __init__(
        self,
        dims: BaseDims,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        prompt_depth: int | None = None,
        context_init: str | None = DEFAULT_CONTEXT_INIT,
        coupling_hidden: int = COUPLING_HIDDEN,
        mlp: str = "ours",
    ) -> None:
        super().__init__()
        depth = min(DEFAULT_DEEP_DEPTH, dims.max_depth) if prompt_depth is None else prompt_depth
        check_positive(self.name, "n_ctx", n_ctx)
        check_positive(self.name, "coupling_hidden", coupling_hidden)
        check_depth(self.name, depth, dims)
        self.context = text_context(n_ctx, depth, dims, context_init)
        self.couplings = nn.ModuleList(
            projection(dims.text_width, dims.vision_width, coupling_hidden, mlp) for _ in range(depth)
        )
        self.hyperparameters = {
            "n_ctx": n_ctx,
            "prompt_depth": depth,
            "context_init": context_init,
            "coupling_hidden": coupling_hidden,
            "mlp": mlp,
        }

    def forward(self, image_features=None) -> PromptSet:
        text = list(self.context.unbind(0))
        return PromptSet(text=text, vision=[couple(ctx) for ctx, couple in zip(text, self.couplings)])
