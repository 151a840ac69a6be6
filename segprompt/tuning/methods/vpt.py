"""Visual prompt tuning (Jia et al., ECCV 2022), shallow and deep.

Learnable tokens are appended to the vision token sequence (after the patch
tokens, before the pre-layernorm). The deep variant overwrites them with fresh
tokens before each of the first ``prompt_depth - 1`` deeper vision layers.
The prompted model strips them again before CLIPSeg's decoder.
"""

from __future__ import annotations

from . import register
from .base import DEFAULT_DEEP_DEPTH, DEFAULT_N_CTX, BaseDims, PromptMethod, PromptSet, check_depth, check_positive, random_vectors


class _VPT(PromptMethod):
    prompts_text = False

    def __init__(self, dims: BaseDims, n_ctx: int, prompt_depth: int) -> None:
        super().__init__()
        check_positive(self.name, "n_ctx", n_ctx)
        check_depth(self.name, prompt_depth, dims)
        self.tokens = random_vectors(prompt_depth, n_ctx, dims.vision_width)
        self.hyperparameters = {"n_ctx": n_ctx, "prompt_depth": prompt_depth}

    def forward(self, image_features=None) -> PromptSet:
        return PromptSet(vision=list(self.tokens.unbind(0)))


@register
class VPTShallow(_VPT):
    name = "vpt-shallow"
    description = "visual prompt tokens at the input of the vision tower"

    def __init__(self, dims: BaseDims, *, n_ctx: int = DEFAULT_N_CTX, prompt_depth: int = 1) -> None:
        if prompt_depth != 1:
            raise ValueError(f"vpt-shallow prompts only the input (prompt_depth=1), got {prompt_depth}; use vpt-deep")
        super().__init__(dims, n_ctx, 1)


@register
class VPTDeep(_VPT):
    name = "vpt-deep"
    description = "visual prompt tokens replaced before each of the first prompt_depth vision layers"
    # TuneVLSeg has one VPT learner whose default depth is 1 (searched from 1 to 10).
    paper_hyperparameters = {"prompt_depth": 1}

    def __init__(self, dims: BaseDims, *, n_ctx: int = DEFAULT_N_CTX, prompt_depth: int | None = None) -> None:
        super().__init__(dims, n_ctx, min(DEFAULT_DEEP_DEPTH, dims.max_depth) if prompt_depth is None else prompt_depth)
