"""SAM's mask decoder, re-associated for speed on CPU and batched over prompts.

``segment_anything``'s ``MaskDecoder`` projects all 4096 image tokens through
the attention layers' 256 -> 128 linear maps for every prompt. With only a few
prompt tokens (``n`` <= 16 per head), the same attention can be computed with
the weights folded into the token side:

* token -> image: ``softmax(Q (W_k k + b_k)^T) (W_v v + b_v)`` equals
  ``softmax((Q W_k) k^T) (softmax-weighted v) W_v^T + b_v`` (the ``Q b_k`` term
  is constant along the softmax axis and each softmax row sums to one);
* image -> token: ``(W_q q + b_q) K^T`` equals ``q (K W_q)^T + b_q K^T``, and
  ``out_proj(P V)`` equals ``P (V W_o^T) + b_o``.

Each image-sized product then has ``heads * n`` columns (about 56) instead of
128 or 256. The positional encoding's share of every projection and the first
layer's image projections (when the prompt holds no mask) do not depend on the
prompt: :class:`ImageContext` computes them once per embedding. Image tokens
stay ``(B, N, C)`` throughout, which is the channels-last layout of the
``(B, C, 64, 64)`` grid, so the output upscaling runs on oneDNN's channels-last
kernels with no transposing copies; it covers only the part of the embedding
that maps into the image (the transposed convolutions have kernel = stride, so
every output pixel depends on one input pixel and cropping changes nothing).

The results equal the reference decoder up to float rounding (about 1e-6 on
the logits), not bit for bit: :meth:`SamSegmenter.predict
<segprompt.backends.sam.SamSegmenter.predict>` keeps the reference decoder;
the interactive and batch-scoring paths use this one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

from ..prompts import LOW_RES_SIDE
from .sam_arch import IMAGE_SIZE


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, L, D)`` -> ``(B, heads, L, D / heads)``."""
    b, length, dim = x.shape
    return x.reshape(b, length, heads, dim // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, L, d)`` -> ``(B, L, heads * d)``."""
    b, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * dim)


def _head_weight(linear: torch.nn.Linear, heads: int) -> torch.Tensor:
    """A ``C -> D`` projection's weight as ``(heads, D / heads, C)``."""
    out_dim, in_dim = linear.weight.shape
    return linear.weight.view(heads, out_dim // heads, in_dim)


def _project_heads(linear: torch.nn.Linear, x: torch.Tensor, heads: int, bias: bool = True) -> torch.Tensor:
    """``linear(x)`` (or without its bias) split into heads: ``(B, L, C)`` -> ``(B, heads, L, d)``."""
    return _split_heads(F.linear(x, linear.weight, linear.bias if bias else None), heads)


def _times_shared(x: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
    """``x @ shared`` for ``(B, h, L, e)`` and ``(1, h, e, M)`` -> ``(B, h, L, M)``.

    A broadcasting matmul would copy ``shared`` once per prompt; folding the
    batch into the rows multiplies every head's ``shared`` block once.
    """
    b, heads, length, dim = x.shape
    out = x.transpose(0, 1).reshape(heads, b * length, dim) @ shared[0]
    return out.view(heads, b, length, -1).transpose(0, 1)


def _scale(attn: Attention) -> float:
    return 1.0 / math.sqrt(attn.internal_dim // attn.num_heads)


def _token_to_image(attn: Attention, q_tok: torch.Tensor, image: torch.Tensor, pe_k: torch.Tensor) -> torch.Tensor:
    """``attn(q=q_tok, k=image + pe, v=image)`` for ``(B, n, C)`` tokens and ``(B, N, C)`` image tokens.

    ``pe_k`` ``(1, h, N, d)`` is the positional encoding projected by ``k_proj`` without its bias.
    """
    heads = attn.num_heads
    b, n, channels = q_tok.shape
    q = _project_heads(attn.q_proj, q_tok, heads) * _scale(attn)  # (B, h, n, d)
    pe_scores = _times_shared(q, pe_k.transpose(-1, -2)).reshape(b, heads * n, -1)
    q_in_image_space = (q @ _head_weight(attn.k_proj, heads)).view(b, heads * n, channels)
    scores = torch.baddbmm(pe_scores, q_in_image_space, image.transpose(1, 2))  # (B, h*n, N)
    pooled = torch.bmm(torch.softmax(scores, dim=-1), image).view(b, heads, n, channels)
    out = pooled @ _head_weight(attn.v_proj, heads).transpose(1, 2) + attn.v_proj.bias.view(heads, 1, -1)
    return attn.out_proj(_merge_heads(out))


def _token_to_image_projected(attn: Attention, q_tok: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Token -> image attention with the image keys/values already projected, ``(1, h, N, d)``."""
    q = _project_heads(attn.q_proj, q_tok, attn.num_heads) * _scale(attn)
    weights = torch.softmax(_times_shared(q, k.transpose(-1, -2)), dim=-1)
    return attn.out_proj(_merge_heads(_times_shared(weights, v)))


def _image_to_token(
    attn: Attention,
    image: torch.Tensor,
    k_tok: torch.Tensor,
    v_tok: torch.Tensor,
    pe_q: torch.Tensor,
    image_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """``image + attn(q=image + pe, k=k_tok, v=v_tok)``, the residual included: ``(B | 1, N, C)`` -> ``(B, N, C)``.

    ``pe_q`` ``(1, h, N, d)`` is the positional encoding projected by ``q_proj``
    with its bias. ``image_q`` is the whole projected query when every prompt
    shares a ``(1, N, C)`` ``image`` (then ``pe_q`` is unused); otherwise
    ``image`` is the batch's own ``(B, N, C)`` tensor and is updated in place.
    """
    heads = attn.num_heads
    b, n, channels = k_tok.shape
    k = _project_heads(attn.k_proj, k_tok, heads) * _scale(attn)  # (B, h, n, d)
    if image_q is not None:
        scores = _times_shared(k, image_q.transpose(-1, -2))  # (B, h, n, N)
    else:
        pe_scores = _times_shared(k, pe_q.transpose(-1, -2)).reshape(b, heads * n, -1)
        k_in_image_space = (k @ _head_weight(attn.q_proj, heads)).view(b, heads * n, channels)
        scores = torch.baddbmm(pe_scores, k_in_image_space, image.transpose(1, 2)).view(b, heads, n, -1)
    # softmax over each head's n tokens; (B, h, n, N) keeps N contiguous, which vectorises it
    weights = torch.softmax(scores, dim=2).reshape(b, heads * n, -1)
    out_weight = attn.out_proj.weight.view(channels, heads, -1).permute(1, 2, 0)  # (h, d, C)
    values = _project_heads(attn.v_proj, v_tok, heads) @ out_weight  # (B, h, n, C)
    # each head's weights sum to one, so b_o / heads on every value adds b_o once
    values = (values + attn.out_proj.bias / heads).view(b, heads * n, channels)
    if image_q is not None:
        return torch.bmm(weights.transpose(1, 2), values).add_(image)
    return image.baddbmm_(weights.transpose(1, 2), values)


def low_res_extent(input_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the 256 x 256 low-res logits that the image's ``(h, w)`` input area reads.

    Bilinear 4x upsampling maps output row ``i`` to source rows
    ``floor((i + 0.5) / 4 - 0.5)`` and the next one, so rows ``i < h`` read at
    most ``ceil(h / 4) + 1`` source rows (likewise for columns).
    """
    stride = IMAGE_SIZE // LOW_RES_SIDE
    rows, cols = (min(LOW_RES_SIDE, -(-side // stride) + 1) for side in input_hw)
    return rows, cols


@dataclass
class ImageContext:
    """Prompt-independent decoder inputs of one image embedding.

    Attributes:
        keys: ``(1, 4096, 256)`` image tokens plus SAM's "no mask" dense embedding.
        pe_k: per token -> image attention (both layers, then the final one),
            ``(1, heads, 4096, 16)`` positional encoding through ``k_proj`` (no bias).
        pe_q: per layer, ``(1, heads, 4096, 16)`` positional encoding through the
            image -> token ``q_proj`` (with bias).
        t2i_k, t2i_v: ``(1, heads, 4096, 16)`` first layer's projected "no mask" image keys/values.
        i2t_q: ``(1, heads, 4096, 16)`` first layer's projected "no mask" image queries.
    """

    keys: torch.Tensor
    pe_k: list[torch.Tensor]
    pe_q: list[torch.Tensor]
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_q: torch.Tensor


class FastMaskDecoder:
    """Decodes batches of prompts against one image embedding with ``model``'s weights.

    The last :class:`ImageContext` is kept, so repeated calls on the same
    embedding (clicks, benchmark strategies, timesteps) share it.
    """

    def __init__(self, model: Sam) -> None:
        self.model = model
        self._context_of: torch.Tensor | None = None
        self._context: ImageContext | None = None

    @torch.inference_mode()
    def context(self, features: torch.Tensor) -> ImageContext:
        """The :class:`ImageContext` of ``(1, 256, 64, 64)`` features (cached for the last one)."""
        if self._context is not None and self._context_of is features:
            return self._context
        encoder = self.model.prompt_encoder
        transformer = self.model.mask_decoder.transformer
        dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (features + dense).flatten(2).permute(0, 2, 1).contiguous()
        pe = encoder.get_dense_pe().flatten(2).permute(0, 2, 1).contiguous()
        t2i_attentions = [layer.cross_attn_token_to_image for layer in transformer.layers]
        t2i_attentions.append(transformer.final_attn_token_to_image)
        first = transformer.layers[0]
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        self._context = ImageContext(
            keys=keys,
            pe_k=[_project_heads(attn.k_proj, pe, attn.num_heads, bias=False) for attn in t2i_attentions],
            pe_q=[
                _project_heads(layer.cross_attn_image_to_token.q_proj, pe, layer.cross_attn_image_to_token.num_heads)
                for layer in transformer.layers
            ],
            t2i_k=_project_heads(t2i.k_proj, keys + pe, t2i.num_heads),
            t2i_v=_project_heads(t2i.v_proj, keys, t2i.num_heads),
            i2t_q=_project_heads(i2t.q_proj, keys + pe, i2t.num_heads),
        )
        self._context_of = features
        return self._context

    def _layer(
        self,
        index: int,
        layer: TwoWayAttentionBlock,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        context: ImageContext,
        shared_keys: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        q = queries + query_pe
        t2i = layer.cross_attn_token_to_image
        if shared_keys:
            attn_out = _token_to_image_projected(t2i, q, context.t2i_k, context.t2i_v)
        else:
            attn_out = _token_to_image(t2i, q, keys, context.pe_k[index])
        queries = layer.norm2(queries + attn_out)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + query_pe
        keys = _image_to_token(
            layer.cross_attn_image_to_token,
            keys,
            q,
            queries,
            context.pe_q[index],
            image_q=context.i2t_q if shared_keys else None,
        )
        return queries, layer.norm4(keys)

    def _upscale(self, keys: torch.Tensor, hyper: torch.Tensor, input_hw: tuple[int, int] | None) -> torch.Tensor:
        """``(B, N, C)`` image tokens and ``(B, K', 32)`` hypernetwork outputs -> ``(B, K', rows, cols)`` logits."""
        upscaling = self.model.mask_decoder.output_upscaling
        batch, tokens, channels = keys.shape
        side = math.isqrt(tokens)
        rows = cols = side
        if input_hw is not None:
            # Each embedding cell becomes a 4 x 4 block of low-res logits, independently of its
            # neighbours (kernel = stride), so cells outside the needed block can be dropped.
            per_cell = LOW_RES_SIDE // side
            rows, cols = (-(-extent // per_cell) for extent in low_res_extent(input_hw))
        grid = keys.view(batch, side, side, channels)[:, :rows, :cols].permute(0, 3, 1, 2)
        x = upscaling[0](grid.contiguous(memory_format=torch.channels_last))
        norm = upscaling[1]  # SAM's LayerNorm2d normalises over channels: the last axis of this layout
        x = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)
        x = upscaling[4](upscaling[3](upscaling[2](x)))  # (B, 32, H, W), channels-last
        b, dim, height, width = x.shape
        masks = torch.bmm(x.permute(0, 2, 3, 1).reshape(b, height * width, dim), hyper.transpose(1, 2))
        return masks.transpose(1, 2).reshape(b, -1, height, width)

    @torch.inference_mode()
    def decode(
        self,
        features: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor | None,
        multimask: bool,
        input_hw: tuple[int, int] | None = None,
        best_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks and scores for a batch of ``B`` prompts.

        Args:
            features: ``(1, 256, 64, 64)`` image embedding.
            sparse: ``(B, n, 256)`` sparse prompt embeddings (prompt encoder output).
            dense: ``(B, 256, 64, 64)`` dense embeddings of mask prompts, or
                ``None`` when no prompt of the batch has a mask (SAM's "no mask").
            multimask: three candidate masks (``True``) or one.
            input_hw: when given, only the low-resolution block covering the
                image (``ceil(h / 4)`` x ``ceil(w / 4)`` rounded up to a multiple of
                4) is computed, enough for :func:`~segprompt.backends.sam.upsample_logits`.
            best_only: return only the highest-scoring candidate's logits
                (the other candidates' masks are never computed).

        Returns:
            ``(low_res_logits (B, K', rows, cols), scores (B, K))`` where ``K``
            is 3 or 1, ``K'`` is 1 with ``best_only`` else ``K``, and
            ``rows = cols = 256`` without ``input_hw``.
        """
        decoder = self.model.mask_decoder
        transformer = decoder.transformer
        context = self.context(features)
        batch = sparse.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
        if dense is None:
            keys = context.keys
        else:
            keys = (features + dense).flatten(2).permute(0, 2, 1).contiguous()
        queries = tokens
        for index, layer in enumerate(transformer.layers):
            shared_keys = index == 0 and dense is None
            queries, keys = self._layer(index, layer, queries, keys, tokens, context, shared_keys)
        first = 1 if multimask else 0
        count = decoder.num_mask_tokens - 1 if multimask else 1
        # Tokens attend to the image independently in the final attention: only the IoU token and
        # the returned mask tokens are read afterwards, so only their rows are computed.
        needed = [0, *range(1 + first, 1 + first + count)]
        final = transformer.final_attn_token_to_image
        attn_out = _token_to_image(final, (queries + tokens)[:, needed], keys, context.pe_k[-1])
        hs = transformer.norm_final_attn(queries[:, needed] + attn_out)

        scores = decoder.iou_prediction_head(hs[:, 0, :])[:, first : first + count]
        mlps = decoder.output_hypernetworks_mlps[first : first + count]
        hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(mlps)], dim=1)
        if best_only:
            hyper = hyper[torch.arange(batch), scores.argmax(dim=1)][:, None]
        return self._upscale(keys, hyper, input_hw), scores


__all__ = ["FastMaskDecoder", "ImageContext"]
