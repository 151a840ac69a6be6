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
128 or 256. The first layer's image projections do not depend on the prompt
(when it holds no mask); :class:`ImageContext` computes them once per
embedding. The output upscaling runs only on the part of the embedding that
maps into the image (the transposed convolutions have kernel = stride, so
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


def _token_to_image(attn: Attention, q_tok: torch.Tensor, k_img: torch.Tensor, v_img: torch.Tensor) -> torch.Tensor:
    """``attn(q=q_tok, k=k_img, v=v_img)`` for ``(B, n, C)`` tokens and ``(B | 1, N, C)`` image tokens."""
    heads = attn.num_heads
    b, n, channels = q_tok.shape
    head_dim = attn.internal_dim // heads
    q = _split_heads(attn.q_proj(q_tok), heads)  # (B, h, n, d)
    q_in_image_space = (q @ _head_weight(attn.k_proj, heads)).reshape(b, heads * n, channels)
    scores = (q_in_image_space @ k_img.transpose(1, 2)) / math.sqrt(head_dim)  # (B, h*n, N)
    weighted_v = (torch.softmax(scores, dim=-1) @ v_img).view(b, heads, n, channels)
    out = weighted_v @ _head_weight(attn.v_proj, heads).transpose(1, 2) + attn.v_proj.bias.view(heads, 1, head_dim)
    return attn.out_proj(_merge_heads(out))


def _token_to_image_projected(attn: Attention, q_tok: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Token -> image attention with the image keys/values already projected, ``(1, h, N, d)``."""
    q = _split_heads(attn.q_proj(q_tok), attn.num_heads)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return attn.out_proj(_merge_heads(torch.softmax(scores, dim=-1) @ v))


def _image_to_token(
    attn: Attention,
    q_img: torch.Tensor,
    k_tok: torch.Tensor,
    v_tok: torch.Tensor,
    q_projected: torch.Tensor | None = None,
) -> torch.Tensor:
    """``attn(q=q_img, k=k_tok, v=v_tok)`` for ``(B | 1, N, C)`` image tokens and ``(B, n, C)`` tokens.

    ``q_projected`` (``(1, h, N, d)``) replaces the projection of ``q_img`` when
    it is shared by every prompt.
    """
    heads = attn.num_heads
    b, n, channels = k_tok.shape
    head_dim = attn.internal_dim // heads
    k = _split_heads(attn.k_proj(k_tok), heads)  # (B, h, n, d)
    v = _split_heads(attn.v_proj(v_tok), heads)
    if q_projected is None:
        k_in_image_space = (k @ _head_weight(attn.q_proj, heads)).reshape(b, heads * n, channels)
        bias = (k * attn.q_proj.bias.view(heads, 1, head_dim)).sum(-1)  # (B, h, n)
        scores = (q_img @ k_in_image_space.transpose(1, 2)).view(b, -1, heads, n) + bias[:, None]
    else:
        scores = torch.einsum("bhid,bhjd->bihj", q_projected, k)
    # scores: (B, N, h, n), softmax over the n tokens; this layout needs no transpose afterwards
    weights = torch.softmax(scores / math.sqrt(head_dim), dim=-1)
    out_weight = attn.out_proj.weight.view(channels, heads, head_dim).permute(1, 2, 0)  # (h, d, C)
    values_out = (v @ out_weight).reshape(b, heads * n, channels)
    return weights.reshape(b, weights.shape[1], heads * n) @ values_out + attn.out_proj.bias


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
    """Prompt-independent decoder inputs of one image embedding (no mask prompt).

    Attributes:
        keys: ``(1, 4096, 256)`` image tokens plus SAM's "no mask" dense embedding.
        pe: ``(1, 4096, 256)`` positional encoding of the 64 x 64 grid.
        t2i_k, t2i_v: ``(1, heads, 4096, 16)`` first layer's projected image keys/values.
        i2t_q: ``(1, heads, 4096, 16)`` first layer's projected image queries.
    """

    keys: torch.Tensor
    pe: torch.Tensor
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
        first = self.model.mask_decoder.transformer.layers[0]
        dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (features + dense).flatten(2).permute(0, 2, 1)
        pe = encoder.get_dense_pe().flatten(2).permute(0, 2, 1)
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        self._context = ImageContext(
            keys=keys,
            pe=pe,
            t2i_k=_split_heads(t2i.k_proj(keys + pe), t2i.num_heads),
            t2i_v=_split_heads(t2i.v_proj(keys), t2i.num_heads),
            i2t_q=_split_heads(i2t.q_proj(keys + pe), i2t.num_heads),
        )
        self._context_of = features
        return self._context

    def _layer(
        self,
        layer: TwoWayAttentionBlock,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        context: ImageContext | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        q = queries + query_pe
        if context is not None:
            attn_out = _token_to_image_projected(layer.cross_attn_token_to_image, q, context.t2i_k, context.t2i_v)
        else:
            attn_out = _token_to_image(layer.cross_attn_token_to_image, q, keys + key_pe, keys)
        queries = layer.norm2(queries + attn_out)
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + query_pe
        attn_out = _image_to_token(
            layer.cross_attn_image_to_token,
            keys + key_pe,
            q,
            queries,
            q_projected=None if context is None else context.i2t_q,
        )
        return queries, layer.norm4(keys + attn_out)

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
            keys = (features + dense).flatten(2).permute(0, 2, 1)
        queries = tokens
        for index, layer in enumerate(transformer.layers):
            shared = context if index == 0 and dense is None else None
            queries, keys = self._layer(layer, queries, keys, tokens, context.pe, shared)
        attn_out = _token_to_image(transformer.final_attn_token_to_image, queries + tokens, keys + context.pe, keys)
        hs = transformer.norm_final_attn(queries + attn_out)

        first = 1 if multimask else 0
        count = decoder.num_mask_tokens - 1 if multimask else 1
        scores = decoder.iou_prediction_head(hs[:, 0, :])[:, first : first + count]
        hyper = torch.stack(
            [mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1
        )[:, first : first + count]
        if best_only:
            hyper = hyper[torch.arange(batch), scores.argmax(dim=1)][:, None]

        side = math.isqrt(keys.shape[1])
        src = keys.transpose(1, 2).reshape(batch, -1, side, side)
        if input_hw is not None:
            # Each embedding cell becomes a 4 x 4 block of low-res logits, independently of its
            # neighbours (kernel = stride), so cells outside the needed block can be dropped.
            per_cell = LOW_RES_SIDE // side
            rows, cols = low_res_extent(input_hw)
            src = src[..., : -(-rows // per_cell), : -(-cols // per_cell)]
        upscaled = decoder.output_upscaling(src)
        b, channels, height, width = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, channels, height * width)).view(b, -1, height, width)
        return masks, scores


__all__ = ["FastMaskDecoder", "ImageContext"]
