"""A frozen CLIPSeg read through learnable prompts.

:class:`PromptedCLIPSeg` re-runs ``CLIPSegForImageSegmentation``'s forward
pass with the model's own submodules (embeddings, encoder layers, final norms,
projections, decoder) in the same order, inserting a method's prompt vectors:

* text: ``[BOS, ctx_1 .. ctx_n, tokens, EOS]``; the attention mask gets ``n``
  ones after BOS and the EOS pooling index moves by ``n``; deep context
  replaces positions ``1 .. n`` before text layer ``d`` for ``1 <= d < depth``;
* vision: prompt tokens appended after the patch tokens before the
  pre-layernorm; deep prompts replace them before vision layer ``d``; they are
  stripped from the activations CLIPSeg's decoder reads (``extract_layers``).

Without a method (or with a method giving no prompts) the logits equal the
original model's bit for bit. The backbone's parameters never require grad
and it always stays in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import SegpromptError
from ..hub import PretrainedModel, load_pretrained
from .methods import BaseDims, PromptMethod, PromptSet

#: The hub id ``--base`` defaults to.
DEFAULT_BASE = "CIDAS/clipseg-rd64-refined"


def load_base(path_or_id: str | Path) -> PretrainedModel:
    """Load ``CLIPSegForImageSegmentation`` and its ``CLIPSegProcessor`` from a model folder or hub id.

    Raises:
        CheckpointError: the folder is not a model folder, or the id is not
            available (offline without a local copy); see :mod:`segprompt.hub`.
    """
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    path = Path(path_or_id).expanduser()
    if path.exists():
        return load_pretrained(CLIPSegForImageSegmentation, CLIPSegProcessor, str(path_or_id), model_dir=path)
    return load_pretrained(CLIPSegForImageSegmentation, CLIPSegProcessor, str(path_or_id))


@dataclass
class VisionOutput:
    """What the vision tower hands on.

    Attributes:
        activations: per ``extract_layers`` entry (in that order), ``(B, 1 + P, vision_width)``
            hidden states without prompt tokens.
        image_features: ``(B, projection_dim)`` projected CLS feature, or ``None`` when not asked for.
    """

    activations: list[torch.Tensor]
    image_features: torch.Tensor | None


def _with_prompt(hidden: torch.Tensor, prompt: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``hidden`` with positions ``start:stop`` replaced by ``prompt`` (broadcast over the batch), out of place."""
    prompt = prompt.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
    return torch.cat([hidden[:, :start], prompt, hidden[:, stop:]], dim=1)


class PromptedCLIPSeg(nn.Module):
    """``CLIPSegForImageSegmentation`` (frozen) + a :class:`PromptMethod` (trainable).

    Args:
        model: the base model; it is frozen in place (``requires_grad_(False)``, eval mode).
        method: the prompts, or ``None`` for the plain model.
    """

    def __init__(self, model, method: PromptMethod | None = None) -> None:
        super().__init__()
        model.requires_grad_(False)
        self.base = model.eval()
        self.method = method

    @staticmethod
    def dims_of(model, tokenizer) -> BaseDims:
        """The :class:`BaseDims` of ``model``; phrases are embedded with its token embedding."""
        config = model.config
        embedding = model.clip.text_model.embeddings.token_embedding

        def embed_phrase(phrase: str) -> torch.Tensor:
            ids = tokenizer(phrase, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                return embedding(torch.tensor(ids, dtype=torch.long)).detach().clone()

        return BaseDims(
            text_width=config.text_config.hidden_size,
            vision_width=config.vision_config.hidden_size,
            image_feature_dim=config.projection_dim,
            max_depth=min(config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers),
            embed_phrase=embed_phrase,
        )

    def train(self, mode: bool = True) -> "PromptedCLIPSeg":
        super().train(mode)
        # Only the prompt modules (dropout in shared-attn) follow the mode.
        self.base.eval()
        return self

    def prompt_parameters(self) -> list[nn.Parameter]:
        return [] if self.method is None else [p for p in self.method.parameters() if p.requires_grad]

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Segmentation logits.

        Args:
            pixel_values: ``(B, 3, S, S)`` float, normalised as the base model's processor does.
            input_ids: ``(B, L)`` int64 CLIP token ids (BOS ... EOS, padded).
            attention_mask: ``(B, L)`` 0/1 padding mask.

        Returns:
            ``(B, S, S)`` float logits (before sigmoid), as ``CLIPSegForImageSegmentation``'s ``logits``
            (which squeezes a batch of one to ``(S, S)``; this keeps the batch axis).
        """
        method = self.method
        if method is None:
            prompts = PromptSet()
            vision = self.encode_image(pixel_values, [], with_features=False)
        elif method.needs_image_features:
            vision = self.encode_image(pixel_values, [], with_features=True)
            prompts = method(vision.image_features)
            if prompts.vision:
                raise ValueError(f"method {method.name!r} needs image features, so it cannot prompt the vision tower")
        else:
            prompts = method(None)
            vision = self.encode_image(pixel_values, prompts.vision, with_features=False)
        text = self.encode_text(input_ids, attention_mask, prompts.text)
        logits = self.base.decoder(vision.activations, text).logits
        return logits.reshape(pixel_values.shape[0], *logits.shape[-2:])

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: list[torch.Tensor]) -> torch.Tensor:
        """``(B, projection_dim)`` text embedding (CLIPSeg's conditional embedding) with ``context`` inserted after BOS."""
        from transformers.masking_utils import create_causal_mask

        text_model = self.base.clip.text_model
        n_ctx = context[0].shape[-2] if context else 0
        limit = text_model.config.max_position_embeddings
        if input_ids.shape[1] + n_ctx > limit:
            raise SegpromptError(f"text of {input_ids.shape[1]} tokens plus {n_ctx} context vectors exceeds CLIP's {limit} positions")
        embeds = text_model.embeddings.token_embedding(input_ids)
        if n_ctx:
            embeds = _with_prompt(embeds, context[0], 1, 1)
            ones = attention_mask.new_ones(attention_mask.shape[0], n_ctx)
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        hidden = text_model.embeddings(inputs_embeds=embeds)
        mask = create_causal_mask(config=text_model.config, inputs_embeds=hidden, attention_mask=attention_mask, cache=None)
        for depth, layer in enumerate(text_model.encoder.layers):
            if 0 < depth < len(context):
                hidden = _with_prompt(hidden, context[depth], 1, 1 + n_ctx)
            hidden = layer(hidden, mask, is_causal=True)
        hidden = text_model.final_layer_norm(hidden)
        ids = input_ids.to(torch.int)
        # The same EOS rule as CLIPSegTextModel (argmax for old configs with eos_token_id == 2).
        eos = ids.argmax(dim=-1) if text_model.eos_token_id == 2 else (ids == text_model.eos_token_id).int().argmax(dim=-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos + n_ctx]
        return self.base.clip.text_projection(pooled)

    def encode_image(self, pixel_values: torch.Tensor, prompts: list[torch.Tensor], with_features: bool) -> VisionOutput:
        """Run the vision tower with ``prompts`` appended; only as deep as needed.

        The layers after the last of ``extract_layers`` run only when
        ``with_features`` asks for the pooled image feature.
        """
        vision_model = self.base.clip.vision_model
        extract = list(self.base.extract_layers)
        n_prompt = prompts[0].shape[-2] if prompts else 0
        hidden = vision_model.embeddings(pixel_values, interpolate_pos_encoding=True)
        tokens = hidden.shape[1]
        if n_prompt:
            hidden = _with_prompt(hidden, prompts[0], tokens, tokens)
        hidden = vision_model.pre_layrnorm(hidden)
        layers = vision_model.encoder.layers
        last = len(layers) if with_features else max(extract) + 1
        kept: dict[int, torch.Tensor] = {}
        for depth, layer in enumerate(layers[:last]):
            if 0 < depth < len(prompts):
                hidden = _with_prompt(hidden, prompts[depth], tokens, tokens + n_prompt)
            hidden = layer(hidden, None)
            if depth in extract:
                kept[depth] = hidden[:, :tokens]
        features = None
        if with_features:
            features = self.base.clip.visual_projection(vision_model.post_layernorm(hidden[:, 0]))
        return VisionOutput([kept[i] for i in extract], features)
