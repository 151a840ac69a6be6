"""What a prompt-tuning method is: learnable vectors the frozen CLIPSeg reads.

A method owns only prompt parameters. Each call returns a :class:`PromptSet`:
per prompted layer, the vectors that
:class:`~segprompt.tuning.model.PromptedCLIPSeg` places in the text and/or
vision token sequences. Index ``d`` of a list is the layer depth: entry ``0``
is inserted with the embeddings, entry ``d >= 1`` overwrites the same
positions before encoder layer ``d`` (deep prompting). An empty list means the
tower is not prompted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn

from ...errors import SegpromptError

#: Standard deviation of the random initialisation of every prompt vector (TuneVLSeg's ``vector_std``).
PROMPT_INIT_STD = 0.02
#: TuneVLSeg's default number of context vectors / visual prompt tokens.
DEFAULT_N_CTX = 4
#: Depth of the deep variants (MaPLe's paper value), clipped to the model's depth.
DEFAULT_DEEP_DEPTH = 9


@dataclass(frozen=True)
class BaseDims:
    """What a method needs to know of the frozen model.

    Attributes:
        text_width: hidden size of the text tower (CLIPSeg rd64: 512).
        vision_width: hidden size of the vision tower (768).
        image_feature_dim: size of the pooled, projected image feature (``projection_dim``, 512).
        max_depth: the deepest prompt depth both towers support (their smaller layer count).
        embed_phrase: maps a phrase to its ``(n_tokens, text_width)`` token
            embeddings without BOS/EOS (used to initialise context vectors).
    """

    text_width: int
    vision_width: int
    image_feature_dim: int
    max_depth: int
    embed_phrase: Callable[[str], torch.Tensor] = field(compare=False, repr=False)


@dataclass
class PromptSet:
    """Prompt vectors for one forward pass.

    Attributes:
        text: per depth, ``(n_ctx, text_width)`` or ``(B, n_ctx, text_width)`` float tensors.
        vision: per depth, ``(n_ctx, vision_width)`` float tensors.
    """

    text: list[torch.Tensor] = field(default_factory=list)
    vision: list[torch.Tensor] = field(default_factory=list)


def check_depth(name: str, depth: int, dims: BaseDims) -> int:
    """Validate a ``prompt_depth`` against the model; returns it."""
    if not 1 <= depth <= dims.max_depth:
        raise SegpromptError(f"{name}: prompt_depth={depth} must be between 1 and {dims.max_depth} (the model's layer count)")
    return depth


def check_positive(name: str, field_name: str, value: int) -> int:
    if value < 1:
        raise SegpromptError(f"{name}: {field_name}={value} must be at least 1")
    return value


def text_context(n_ctx: int, depth: int, dims: BaseDims, context_init: str | None) -> nn.Parameter:
    """CoOp's learnable context ``(depth, n_ctx, text_width)``.

    Depth 0 starts from the token embeddings of ``context_init`` (which must
    tokenise to exactly ``n_ctx`` tokens); deeper layers and ``context_init=None``
    start from N(0, 0.02).
    """
    context = torch.randn(depth, n_ctx, dims.text_width) * PROMPT_INIT_STD
    if context_init is not None:
        init = dims.embed_phrase(context_init)
        if init.shape[0] != n_ctx:
            raise SegpromptError(
                f"context_init {context_init!r} is {init.shape[0]} tokens but n_ctx={n_ctx}; "
                "give a phrase of n_ctx tokens or no context_init (random start)"
            )
        context[0] = init
    return nn.Parameter(context)


def random_vectors(depth: int, n_ctx: int, width: int) -> nn.Parameter:
    """``(depth, n_ctx, width)`` vectors drawn from N(0, 0.02)."""
    return nn.Parameter(torch.randn(depth, n_ctx, width) * PROMPT_INIT_STD)


#: Styles of a method's small MLP (:func:`projection`).
MLP_STYLES = ("ours", "reference")


def projection(in_dim: int, out_dim: int, hidden: int | None, style: str = "ours", norm_bias: bool = True) -> nn.Sequential:
    """``Linear [-> ReLU -> Linear] -> LayerNorm`` from ``in_dim`` to ``out_dim``.

    ``style="ours"``: PyTorch's default initialisation, biases everywhere.
    ``style="reference"`` (TuneVLSeg's ``get_mlp_projection``, needs ``hidden``):
    the hidden Linear gets Kaiming-normal weights (ReLU gain), the last Linear
    has no bias (the LayerNorm follows), and the LayerNorm's bias is optional.
    """
    if style not in MLP_STYLES:
        raise SegpromptError(f"mlp={style!r} must be one of {', '.join(MLP_STYLES)}")
    if style == "reference":
        if hidden is None:
            raise SegpromptError("the reference MLP needs a hidden width")
        first = nn.Linear(in_dim, hidden)
        nn.init.kaiming_normal_(first.weight, nonlinearity="relu")
        return nn.Sequential(first, nn.ReLU(), nn.Linear(hidden, out_dim, bias=False), nn.LayerNorm(out_dim, bias=norm_bias))
    if hidden is None:
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim))
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim), nn.LayerNorm(out_dim))


class PromptMethod(nn.Module):
    """A prompt-tuning method: a registry entry holding only prompt parameters.

    Subclasses set :attr:`name`, :attr:`description`, take their
    hyper-parameters as keyword arguments after ``dims`` and store them in
    ``self.hyperparameters`` (JSON-serialisable; a checkpoint rebuilds the
    method as ``cls(dims, **hyperparameters)``).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    #: Whether :meth:`forward` needs the pooled image feature (CoCoOp). Such a
    #: method must not prompt the vision tower, which computes that feature.
    needs_image_features: ClassVar[bool] = False
    #: Whether the method inserts context vectors into the text sequence.
    prompts_text: ClassVar[bool] = True
    #: Hyper-parameters that reproduce the TuneVLSeg reference code's internals
    #: (naamiinepal/tunevlseg), the ``paper`` protocol's defaults for this method.
    paper_hyperparameters: ClassVar[Mapping[str, Any]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.hyperparameters: dict[str, Any] = {}

    def forward(self, image_features: torch.Tensor | None = None) -> PromptSet:  # pragma: no cover - abstract
        """Prompts for a batch; ``image_features`` is ``(B, image_feature_dim)`` when :attr:`needs_image_features`."""
        raise NotImplementedError

    @property
    def text_length(self) -> int:
        """Text positions the context takes (the tokenised phrase must leave room for them)."""
        return int(self.hyperparameters["n_ctx"]) if self.prompts_text else 0

    def num_trainable(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
