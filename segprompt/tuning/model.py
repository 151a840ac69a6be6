"""A frozen CLIPSeg read through learnable prompts.

:class:`PromptedCLIPSeg` re-runs ``CLIPSegForImageSegmentation``'s forward
pass with the model's own submodules (embeddings, encoder layers, final norms,
projections, decoder) in the same order, inserting a method's prompt vectors:

* text: ``[BOS, ctx_1 .. ctx_n, tokens, EOS]``; the attention mask gets ``n``
  ones after BOS and the EOS pooling index moves by ``n``; deep context
  replaces positions ``1 .. n`` before text layer ``d`` for ``1 <= d < depth``;
* vision: prompt tokens appended after the patch tokens before the
  pre-layernorm; deep prompts replace them before vision layer ``d``; they are
  stripped from the activations CLIPSeg's decoder reads (``extract_layers``),
  or, with ``ModelOptions(prompts_in_decoder=True)`` (the TuneVLSeg reference
  code), kept through the decoder's transformer layers and dropped just before
  its upsampling;
* decoder: CLIPSeg's decoder run with its own submodules, optionally followed
  by TuneVLSeg's extra last layer (:class:`ExtraLastLayer`).

Without a method (or with a method giving no prompts) and without the extra
layer the logits equal the original model's bit for bit. The backbone's
parameters never require grad and it always stays in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import SegpromptError
from ..hub import PretrainedModel, load_pretrained
from .methods import BaseDims, PromptMethod, PromptSet

#: The hub id ``--base`` defaults to.
DEFAULT_BASE = "CIDAS/clipseg-rd64-refined"
#: How the extra last layer joins the logits (see :class:`ExtraLastLayer`).
EXTRA_LAYER_MIXES = ("blend", "add")
#: Key prefix of the extra layer's tensors in a checkpoint (the method's have none).
EXTRA_PREFIX = "extra_layer."


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
            hidden states without prompt tokens (with them appended when ``prompts_in_decoder``).
        image_features: ``(B, projection_dim)`` projected CLS feature, or ``None`` when not asked for.
    """

    activations: list[torch.Tensor]
    image_features: torch.Tensor | None


@dataclass(frozen=True)
class ModelOptions:
    """How the prompted model reads the frozen CLIPSeg (stored in ``tuning.json`` as ``model_options``).

    Attributes:
        extra_layer: ``None``, or how :class:`ExtraLastLayer` joins the logits: ``"blend"`` or ``"add"``.
        prompts_in_decoder: keep the visual prompt tokens in the activations through the
            decoder's transformer layers (the reference code) instead of stripping them first.
    """

    extra_layer: str | None = None
    prompts_in_decoder: bool = False

    def __post_init__(self) -> None:
        if self.extra_layer is not None and self.extra_layer not in EXTRA_LAYER_MIXES:
            raise SegpromptError(f"extra_layer={self.extra_layer!r} must be one of {', '.join(EXTRA_LAYER_MIXES)} or None")


class ExtraLastLayer(nn.Module):
    """TuneVLSeg's optional trainable last layer (``use_new_last_layer``).

    The decoder's ``(B, reduce_dim, g, g)`` patch-grid features are upsampled
    ``patch_size`` times (bilinear) and a ``kernel_size`` convolution
    (replicate padding) maps them to one channel, which joins CLIPSeg's logits:
    ``"blend"``: ``(1 - r) * logits + r * extra`` with a learnable ``r`` starting
    at 0.5 (the reference's multimodal models); ``"add"``: ``logits + extra``
    (its VPT model).
    """

    def __init__(
        self, reduce_dim: int, patch_size: int, mix: str = "blend", kernel_size: int = 5, residual_ratio: float = 0.5
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.mix = mix
        self.conv = nn.Conv2d(reduce_dim, 1, kernel_size, padding="same", padding_mode="replicate")
        self.residual_ratio = nn.Parameter(torch.tensor(residual_ratio)) if mix == "blend" else None

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``(B, 1, S, S)`` logits mixed with the layer's output on ``features`` ``(B, reduce_dim, g, g)``, ``S = g * patch``."""
        upsampled = nn.functional.interpolate(features, scale_factor=float(self.patch_size), mode="bilinear", align_corners=False)
        extra = self.conv(upsampled)
        if self.residual_ratio is None:
            return logits + extra
        return (1 - self.residual_ratio) * logits + self.residual_ratio * extra


def _with_prompt(hidden: torch.Tensor, prompt: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``hidden`` with positions ``start:stop`` replaced by ``prompt`` (broadcast over the batch), out of place."""
    prompt = prompt.to(hidden.dtype).expand(hidden.shape[0], -1, -1)
    return torch.cat([hidden[:, :start], prompt, hidden[:, stop:]], dim=1)


class PromptedCLIPSeg(nn.Module):
    """``CLIPSegForImageSegmentation`` (frozen) + a :class:`PromptMethod` (trainable).

    Args:
        model: the base model; it is frozen in place (``requires_grad_(False)``, eval mode).
        method: the prompts, or ``None`` for the plain model.
        options: how the prompts and the extra layer enter (:class:`ModelOptions`).
    """

    def __init__(self, model, method: PromptMethod | None = None, options: ModelOptions = ModelOptions()) -> None:
        super().__init__()
        model.requires_grad_(False)
        self.base = model.eval()
        self.method = method
        self.options = options
        config = model.config
        self.extra_layer = (
            None if options.extra_layer is None
            else ExtraLastLayer(config.reduce_dim, config.vision_config.patch_size, options.extra_layer)
        )  # fmt: skip

    @staticmethod
    def dims_of(model, tokenizer) -> BaseDims:
        """The :class:`BaseDims` of ``model``; phrases are embedded with its token embedding."""
        config = model.config
        embedding = model.clip.text_model.embeddings.token_embedding

        def embed_phrase(phrase: str) -> torch.Tensor:
            ids = tokenizer(phrase, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                ids_tensor = torch.tensor(ids, dtype=torch.long, device=embedding.weight.device)
                return embedding(ids_tensor).detach().cpu()  # prompts start on the CPU, then move with the model

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

    def _trainable(self) -> list[nn.Module]:
        return [module for module in (self.method, self.extra_layer) if module is not None]

    def prompt_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter: the method's and the extra layer's."""
        return [p for module in self._trainable() for p in module.parameters() if p.requires_grad]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.prompt_parameters())

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The learnt tensors: the method's state dict, plus the extra layer's under ``extra_layer.``."""
        state = {} if self.method is None else dict(self.method.state_dict())
        if self.extra_layer is not None:
            state.update({EXTRA_PREFIX + key: value for key, value in self.extra_layer.state_dict().items()})
        return state

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`trainable_state`; ``RuntimeError`` on missing, unexpected or misshapen tensors."""
        extra = {key[len(EXTRA_PREFIX) :]: value for key, value in state.items() if key.startswith(EXTRA_PREFIX)}
        own = {key: value for key, value in state.items() if not key.startswith(EXTRA_PREFIX)}
        for module, part, what in ((self.method, own, "prompt"), (self.extra_layer, extra, "extra-layer")):
            if module is not None:
                module.load_state_dict(part)
            elif part:
                raise RuntimeError(f"{what} tensors {sorted(part)[:3]} have no module to load into")

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
        n_prompt = prompts.vision[0].shape[-2] if prompts.vision and self.options.prompts_in_decoder else 0
        return self.decode(vision.activations, text, n_prompt)

    def decode(self, activations: list[torch.Tensor], text: torch.Tensor, n_prompt: int = 0) -> torch.Tensor:
        """``CLIPSegDecoder.forward`` with the model's own submodules, then the optional extra layer.

        Args:
            activations: per ``extract_layers`` entry, ``(B, 1 + P + n_prompt, vision_width)``.
            text: ``(B, projection_dim)`` conditional embedding (FiLM).
            n_prompt: trailing visual prompt tokens in ``activations``, dropped after the decoder layers.

        Returns:
            ``(B, S, S)`` logits.
        """
        decoder = self.base.decoder
        output = None
        for i, (activation, layer, reduce) in enumerate(zip(activations[::-1], decoder.layers, decoder.reduces)):
            output = reduce(activation) if output is None else reduce(activation) + output
            if i == decoder.conditional_layer:
                output = decoder.film_mul(text) * output.permute(1, 0, 2) + decoder.film_add(text)
                output = output.permute(1, 0, 2)
            output = layer(output, attention_mask=None)
        # drop CLS (and the prompts), then (B, reduce_dim, P) -> (B, reduce_dim, g, g)
        output = output[:, 1 : output.shape[1] - n_prompt, :].transpose(1, 2)
        size = int(math.sqrt(output.shape[2]))
        features = output.view(output.shape[0], output.shape[1], size, size)
        logits = decoder.transposed_convolution(features)
        if self.extra_layer is not None:
            logits = self.extra_layer(logits, features)
        return logits[:, 0]

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
        ``with_features`` asks for the pooled image feature. Deep prompts for
        layer ``d`` are written right after layer ``d - 1``, so an activation
        kept with its prompts (``prompts_in_decoder``) holds the next layer's
        prompts, as in the reference code (which overwrites them in place).
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
        keep = tokens + n_prompt if self.options.prompts_in_decoder else tokens
        for depth, layer in enumerate(layers[:last]):
            hidden = layer(hidden, None)
            if depth + 1 < len(prompts):
                hidden = _with_prompt(hidden, prompts[depth + 1], tokens, tokens + n_prompt)
            if depth in extract:
                kept[depth] = hidden[:, :keep]
        features = None
        if with_features:
            features = self.base.clip.visual_projection(vision_model.post_layernorm(hidden[:, 0]))
        return VisionOutput([kept[i] for i in extract], features)
