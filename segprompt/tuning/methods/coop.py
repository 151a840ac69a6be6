"""CoOp: learnable text context after BOS (Zhou et al., IJCV 2022), deep variant optional.

The text sequence becomes ``[BOS, ctx_1 .. ctx_n, class tokens, EOS]``; with
``prompt_depth > 1`` the context positions are overwritten with fresh vectors
before each of the first ``prompt_depth - 1`` deeper text layers.
"""

from __future__ import annotations

from . import register
from .base import DEFAULT_N_CTX, BaseDims, PromptMethod, PromptSet, check_depth, check_positive, text_context

#: CoOp's initial context phrase (4 tokens).
DEFAULT_CONTEXT_INIT = "a photo of a"


@register
class CoOp(PromptMethod):
    name = "coop"
    description = "text context vectors after BOS (deep with prompt_depth > 1)"

    def __init__(
        self, dims: BaseDims, *, n_ctx: int = DEFAULT_N_CTX, prompt_depth: int = 1, context_init: str | None = DEFAULT_CONTEXT_INIT
    ) -> None:
        super().__init__()
        check_positive(self.name, "n_ctx", n_ctx)
        check_depth(self.name, prompt_depth, dims)
        self.context = text_context(n_ctx, prompt_depth, dims, context_init)
        self.hyperparameters = {"n_ctx": n_ctx, "prompt_depth": prompt_depth, "context_init": context_init}

    def forward(self, image_features=None) -> PromptSet:
        return PromptSet(text=list(self.context.unbind(0)))
