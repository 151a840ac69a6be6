"""SAM's mask decoder as one function of its inputs: prompts, the image's context and PerSAM's guidance.

:func:`decode_masks` runs ``segment_anything``'s ``MaskDecoder`` (its two-way
transformer, output upscaling and heads) with the model's own weights and
never modifies the model, so any number of threads may decode with one model
at once. It takes, as arguments, what variants of SAM add to the decoding:

* **PerSAM's target guidance** (:class:`Guidance`; Zhang et al., 2023): an
  attention bias added to the token-to-image attention probabilities of every
  two-way block (then re-normalised by a softmax), and a target embedding
  added to the query tokens entering every block and to the final
  token-to-image query;
* **which candidates to compute** (``select``): all, the highest-scored one,
  or the first (``masks[0]``), so unused candidates are never upsampled;
  :func:`decode_scoring_above` computes the logits only of prompts with a
  candidate scoring above a threshold (segment-anything's automatic mask
  generator drops the others).

Two numerics, one set of steps:

* ``exact=True`` performs ``MaskDecoder.forward``'s operations in its order
  (the image repeated per prompt, attention as ``segment_anything``'s
  ``Attention``), so its output equals ``SamPredictor``'s bit for bit;
* ``exact=False`` re-associates the attention for speed on CPU and batches:
  ``segment_anything`` projects all 4096 image tokens through the attention
  layers' 256 -> 128 linear maps for every prompt, while with few prompt
  tokens (``n`` <= 16 per head) the same attention can be computed with the
  weights folded into the token side:

  - token -> image: ``softmax(Q (W_k k + b_k)^T) (W_v v + b_v)`` equals
    ``softmax((Q W_k) k^T) (softmax-weighted v) W_v^T + b_v`` (the ``Q b_k``
    term is constant along the softmax axis and each softmax row sums to one;
    PerSAM's bias re-normalises rows that still sum to one);
  - image -> token: ``(W_q q + b_q) K^T`` equals ``q (K W_q)^T + b_q K^T``, and
    ``out_proj(P V)`` equals ``P (V W_o^T) + b_o``.

  Each image-sized product then has ``heads * n`` columns (about 56) instead
  of 128 or 256. The positional encoding's share of every projection and the
  first layer's image projections (when no prompt holds a mask) do not depend
  on the prompt: :class:`DecoderContext` computes them once per image. Image
  tokens stay ``(B, N, C)``, the channels-last layout of the ``(B, C, 64, 64)``
  grid, which is what the output upscaling's transposed convolutions (kernel =
  stride) need as matrix products (:class:`UpscalingProducts`): no layout
  copies, and only over the part of the grid that maps into the image
  (cropping changes nothing). The logits equal the exact ones up to float
  rounding (about 1e-6).

Precision: the re-associated decoder is matmuls only, so on CUDA it computes
in IEEE float32 whenever matmul TF32 is off (PyTorch's default;
:func:`segprompt.precision.ieee_float32` makes sure of it), while cuDNN
convolutions, which the exact path and ``SamPredictor`` use, default to TF32.

Frames: low-resolution logits are ``256 x 256`` over SAM's padded ``1024 x
1024`` input (see :class:`~segprompt.backends.frame.ModelFrame`);
:func:`upsample_logits` brings them to original-image pixels.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock

from ..prompts import LOW_RES_SIDE
from .base import CandidateSelection, chosen_candidates
from .sam_arch import IMAGE_SIZE

#: Low-resolution logits per input pixel along each axis (256 / 1024).
LOW_RES_STRIDE = IMAGE_SIZE // LOW_RES_SIDE


@dataclass(frozen=True)
class Guidance:
    """PerSAM's target guidance of the decoder (see the module docstring); ``None`` fields guide nothing.

    Attributes:
        attention_bias: ``(1, 1, 1, N)`` added to every two-way block's
            token-to-image attention probabilities, ``N = 4096`` image tokens
            in row-major order (:func:`segprompt.backends.persam.attention_bias`).
        target: ``(C,)`` target embedding added to the query tokens.
    """

    attention_bias: torch.Tensor | None = None
    target: torch.Tensor | None = None


# -- attention ----------------------------------------------------------------------------------


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, L, D)`` -> ``(B, heads, L, D / heads)``."""
    b, length, dim = x.shape
    return x.reshape(b, length, heads, dim // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, L, d)`` -> ``(B, L, heads * d)``."""
    b, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * dim)


def _guided(probabilities: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """PerSAM's target-guided attention: ``softmax(probabilities + bias)`` over the keys (last axis)."""
    if bias is None:
        return probabilities
    return torch.softmax(probabilities + bias.reshape(-1).to(probabilities), dim=-1)  # bias: one value per key


def attention(attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``attn(q=q, k=k, v=v)`` with the operations of ``segment_anything``'s ``Attention.forward``, bit for bit.

    ``bias`` (PerSAM) is added to the softmax probabilities, which are then
    re-normalised by a second softmax.
    """
    q = _split_heads(attn.q_proj(q), attn.num_heads)
    k = _split_heads(attn.k_proj(k), attn.num_heads)
    v = _split_heads(attn.v_proj(v), attn.num_heads)
    probabilities = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]), dim=-1)
    return attn.out_proj(_merge_heads(_guided(probabilities, bias) @ v))


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


def _fast_token_to_image(
    attn: Attention, q_tok: torch.Tensor, image: torch.Tensor, pe_k: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``attention(attn, q_tok, image + pe, image, bias)``, re-associated, for ``(B, n, C)`` tokens and ``(B, N, C)`` image tokens.

    ``pe_k`` ``(1, h, N, d)`` is the positional encoding projected by ``k_proj`` without its bias.
    """
    heads = attn.num_heads
    b, n, channels = q_tok.shape
    q = _project_heads(attn.q_proj, q_tok, heads) * _scale(attn)  # (B, h, n, d)
    pe_scores = _times_shared(q, pe_k.transpose(-1, -2)).reshape(b, heads * n, -1)
    q_in_image_space = (q @ _head_weight(attn.k_proj, heads)).view(b, heads * n, channels)
    scores = torch.baddbmm(pe_scores, q_in_image_space, image.transpose(1, 2))  # (B, h*n, N)
    weights = _guided(torch.softmax(scores, dim=-1), bias)
    pooled = torch.bmm(weights, image).view(b, heads, n, channels)
    out = pooled @ _head_weight(attn.v_proj, heads).transpose(1, 2) + attn.v_proj.bias.view(heads, 1, -1)
    return attn.out_proj(_merge_heads(out))


def _fast_token_to_projected(
    attn: Attention, q_tok: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Token -> image attention with the image keys/values already projected, ``(1, h, N, d)``."""
    q = _project_heads(attn.q_proj, q_tok, attn.num_heads) * _scale(attn)
    weights = _guided(torch.softmax(_times_shared(q, k.transpose(-1, -2)), dim=-1), bias)
    return attn.out_proj(_merge_heads(_times_shared(weights, v)))


def _fast_image_to_token(
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


# -- the per-image context ------------------------------------------------------------------------


@dataclass(frozen=True)
class UpscalingProducts:
    """SAM's output upscaling (``ConvTranspose2d(k=2, s=2)``, ``LayerNorm2d``, GELU, again, GELU) as matrix products.

    A transposed convolution whose kernel equals its stride maps each input
    pixel's ``C_in`` channels to its own ``2 x 2`` block of outputs, so it is
    one matrix product ``(pixels, C_in) @ (C_in, 4 C_out)`` whose columns are
    ``(di, dj, c_out)``; the second one then takes each output pixel as a row.
    Only matmuls, no convolutions: float32 on every device (cuDNN would use
    TF32 by default), and on the CPU faster than oneDNN's transposed
    convolution and its layout changes.

    Attributes:
        first, second: ``(C_in, 4 C_out)`` weights of the two transposed convolutions.
        first_bias, second_bias: ``(4 C_out,)`` their biases, repeated per ``(di, dj)``.
    """

    first: torch.Tensor
    first_bias: torch.Tensor
    second: torch.Tensor
    second_bias: torch.Tensor

    @classmethod
    def of(cls, model: Sam) -> "UpscalingProducts":
        first, second = model.mask_decoder.output_upscaling[0], model.mask_decoder.output_upscaling[3]

        def as_matrix(conv: torch.nn.ConvTranspose2d) -> torch.Tensor:
            return conv.weight.permute(0, 2, 3, 1).reshape(conv.in_channels, -1).contiguous()  # (C_in, (di, dj, C_out))

        return cls(as_matrix(first), first.bias.repeat(4), as_matrix(second), second.bias.repeat(4))


@dataclass(frozen=True)
class FastProjections:
    """Prompt-independent projections the re-associated decoder reads (see the module docstring).

    Attributes:
        keys: ``(1, 4096, 256)`` image tokens plus SAM's "no mask" dense embedding.
        pe_k: per token -> image attention (both layers, then the final one),
            ``(1, heads, 4096, d)`` positional encoding through ``k_proj`` (no bias).
        pe_q: per layer, ``(1, heads, 4096, d)`` positional encoding through the
            image -> token ``q_proj`` (with bias).
        t2i_k, t2i_v: ``(1, heads, 4096, d)`` first layer's projected "no mask" image keys/values.
        i2t_q: ``(1, heads, 4096, d)`` first layer's projected "no mask" image queries.
        upscaling: the output upscaling's weights as matrices.
    """

    keys: torch.Tensor
    pe_k: tuple[torch.Tensor, ...]
    pe_q: tuple[torch.Tensor, ...]
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_q: torch.Tensor
    upscaling: UpscalingProducts

    @classmethod
    @torch.inference_mode()
    def build(cls, model: Sam, features: torch.Tensor, image_pe: torch.Tensor) -> "FastProjections":
        transformer = model.mask_decoder.transformer
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        keys = (features + dense).flatten(2).permute(0, 2, 1).contiguous()
        pe = image_pe.flatten(2).permute(0, 2, 1).contiguous()
        t2i_attentions = [layer.cross_attn_token_to_image for layer in transformer.layers]
        t2i_attentions.append(transformer.final_attn_token_to_image)
        first = transformer.layers[0]
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        return cls(
            keys=keys,
            pe_k=tuple(_project_heads(attn.k_proj, pe, attn.num_heads, bias=False) for attn in t2i_attentions),
            pe_q=tuple(
                _project_heads(layer.cross_attn_image_to_token.q_proj, pe, layer.cross_attn_image_to_token.num_heads)
                for layer in transformer.layers
            ),
            t2i_k=_project_heads(t2i.k_proj, keys + pe, t2i.num_heads),
            t2i_v=_project_heads(t2i.v_proj, keys, t2i.num_heads),
            i2t_q=_project_heads(i2t.q_proj, keys + pe, i2t.num_heads),
            upscaling=UpscalingProducts.of(model),
        )


class DecoderContext:
    """One image's prompt-independent decoder inputs on one device.

    Built by :meth:`segprompt.backends.sam.SamEmbedding.decoder_context`, once
    per embedding and device. ``features`` and ``image_pe`` are ready at once;
    the re-associated decoder's :class:`FastProjections` are computed on first
    use (about 2 GFLOP), under a lock so concurrent first uses compute them once.

    Attributes:
        features: ``(1, 256, 64, 64)`` image embedding on the model's device.
        image_pe: ``(1, 256, 64, 64)`` SAM's dense positional encoding.
    """

    def __init__(self, model: Sam, features: torch.Tensor) -> None:
        self.model = model
        self.features = features
        with torch.inference_mode():
            self.image_pe = model.prompt_encoder.get_dense_pe()
        self._projections: FastProjections | None = None
        self._lock = threading.Lock()

    @property
    def projections(self) -> FastProjections:
        with self._lock:
            if self._projections is None:
                self._projections = FastProjections.build(self.model, self.features, self.image_pe)
            return self._projections


# -- decoding ---------------------------------------------------------------------------------------


def low_res_extent(input_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of the 256 x 256 low-res logits that the image's ``(h, w)`` input area reads.

    Bilinear 4x upsampling maps output row ``i`` to source rows
    ``floor((i + 0.5) / 4 - 0.5)`` and the next one, so rows ``i < h`` read at
    most ``ceil(h / 4) + 1`` source rows (likewise for columns).
    """
    rows, cols = (min(LOW_RES_SIDE, -(-side // LOW_RES_STRIDE) + 1) for side in input_hw)
    return rows, cols


def _cropped_cells(input_hw: tuple[int, int], side: int) -> tuple[int, int]:
    """Embedding cells (of ``side`` a row) whose 4 x 4 logit blocks cover :func:`low_res_extent`."""
    per_cell = LOW_RES_SIDE // side
    rows, cols = (-(-extent // per_cell) for extent in low_res_extent(input_hw))
    return rows, cols


def upsample_logits(low_res: torch.Tensor, input_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """Upsample ``(B, C, 256, 256)`` logits (or their top-left block) to ``(B, C, H, W)`` image pixels.

    Gives the same values as ``Sam.postprocess_masks`` (bilinear to
    1024 x 1024, crop to ``input_hw``, bilinear to ``image_hw``) with less
    work: the low-resolution rows/columns that the crop discards are cut off
    first, which leaves every kept output value's bilinear weights and
    neighbours unchanged (the 4x upsampling of the cut block keeps the scale
    exactly 1/4). The second resize is skipped when ``input_hw == image_hw``
    (a bilinear resize to the same size is the identity).
    """
    h, w = input_hw
    rows, cols = low_res_extent(input_hw)
    block = low_res[..., :rows, :cols]
    logits = F.interpolate(
        block, (rows * LOW_RES_STRIDE, cols * LOW_RES_STRIDE), mode="bilinear", align_corners=False
    )[..., :h, :w]
    if (h, w) != tuple(image_hw):
        logits = F.interpolate(logits, tuple(image_hw), mode="bilinear", align_corners=False)
    return logits


class _ExactCrossAttention:
    """The two-way blocks' cross attentions as ``segment_anything`` computes them (the image repeated per prompt)."""

    def __init__(self, key_pe: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.key_pe = key_pe
        self.bias = bias

    def token_to_image(self, layer: TwoWayAttentionBlock, index: int, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return attention(layer.cross_attn_token_to_image, q, keys + self.key_pe, keys, self.bias)

    def image_to_token(
        self, layer: TwoWayAttentionBlock, index: int, keys: torch.Tensor, q: torch.Tensor, queries: torch.Tensor
    ) -> torch.Tensor:
        attn_out = layer.cross_attn_image_to_token(q=keys + self.key_pe, k=q, v=queries)
        return keys + attn_out


class _FastCrossAttention:
    """The two-way blocks' cross attentions re-associated (see the module docstring).

    ``shared_first`` says the first block's image tokens are the context's
    "no mask" tokens, the same for every prompt, whose projections are ready.
    """

    def __init__(self, projections: FastProjections, shared_first: bool, bias: torch.Tensor | None) -> None:
        self.projections = projections
        self.shared_first = shared_first
        self.bias = bias

    def token_to_image(self, layer: TwoWayAttentionBlock, index: int, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        p = self.projections
        if index == 0 and self.shared_first:
            return _fast_token_to_projected(layer.cross_attn_token_to_image, q, p.t2i_k, p.t2i_v, self.bias)
        return _fast_token_to_image(layer.cross_attn_token_to_image, q, keys, p.pe_k[index], self.bias)

    def image_to_token(
        self, layer: TwoWayAttentionBlock, index: int, keys: torch.Tensor, q: torch.Tensor, queries: torch.Tensor
    ) -> torch.Tensor:
        image_q = self.projections.i2t_q if index == 0 and self.shared_first else None
        return _fast_image_to_token(layer.cross_attn_image_to_token, keys, q, queries, self.projections.pe_q[index], image_q)


def _two_way_block(
    layer: TwoWayAttentionBlock,
    index: int,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    cross: _ExactCrossAttention | _FastCrossAttention,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``TwoWayAttentionBlock.forward`` (block ``index``) with its cross attentions computed by ``cross``."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        attn_out = layer.self_attn(q=q, k=q, v=queries)
        queries = queries + attn_out
    queries = layer.norm1(queries)
    q = queries + query_pe
    attn_out = cross.token_to_image(layer, index, q, keys)
    queries = queries + attn_out
    queries = layer.norm2(queries)
    mlp_out = layer.mlp(queries)
    queries = queries + mlp_out
    queries = layer.norm3(queries)
    q = queries + query_pe
    keys = cross.image_to_token(layer, index, keys, q, queries)
    return queries, layer.norm4(keys)


def _transformer(
    model: Sam,
    tokens: torch.Tensor,
    keys: torch.Tensor,
    cross: _ExactCrossAttention | _FastCrossAttention,
    target: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-way blocks (each entered by the queries plus PerSAM's ``target``): ``(queries, image tokens)``."""
    queries = tokens
    for index, layer in enumerate(model.mask_decoder.transformer.layers):
        if target is not None:
            queries = queries + target.to(queries)
        queries, keys = _two_way_block(layer, index, queries, keys, tokens, cross)
    return queries, keys


def _upscale_fast(
    model: Sam, products: UpscalingProducts, keys: torch.Tensor, hyper: torch.Tensor, cells: tuple[int, int] | None
) -> torch.Tensor:
    """``(B, N, C)`` image tokens and ``(B, K', 32)`` hypernetwork outputs -> ``(B, K', 4 rows, 4 cols)`` logits.

    ``cells = (rows, cols)`` of the token grid to upscale (the top-left block;
    all of it when ``None``). On the CPU one prompt at a time, so the
    intermediate activations (about 10 MB a prompt) stay in the caches; on
    accelerators the whole batch in each product.
    """
    upscaling = model.mask_decoder.output_upscaling
    norm, first_act, second_act = upscaling[1], upscaling[2], upscaling[4]
    batch, tokens, channels = keys.shape
    side = math.isqrt(tokens)
    rows, cols = cells if cells is not None else (side, side)
    grid = keys.view(batch, side, side, channels)[:, :rows, :cols]
    width = norm.weight.shape[0]  # LayerNorm2d normalises each output pixel's channels: a row of width C_out
    count = hyper.shape[1]
    out = keys.new_empty(batch, count, 4 * rows, 4 * cols)
    step = 1 if keys.device.type == "cpu" else batch
    for start in range(0, batch, step):
        part = slice(start, min(batch, start + step))
        n = part.stop - part.start
        x = torch.addmm(products.first_bias, grid[part].reshape(-1, channels), products.first).view(-1, width)
        x = first_act(F.layer_norm(x, (width,), norm.weight, norm.bias, norm.eps))  # rows (b, i, j, di, dj)
        x = second_act(torch.addmm(products.second_bias, x, products.second))  # columns (ei, ej, c)
        masks = torch.bmm(x.view(n, -1, hyper.shape[-1]), hyper[part].transpose(1, 2))  # (n, (i, j, di, dj, ei, ej), K')
        # output pixel (4 i + 2 di + ei, 4 j + 2 dj + ej)
        masks = masks.view(n, rows, cols, 2, 2, 2, 2, count).permute(0, 7, 1, 3, 5, 2, 4, 6)
        out[part] = masks.reshape(n, count, 4 * rows, 4 * cols)
    return out


def _query_tokens(model: Sam, sparse: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + M + n, C)``: the IoU token, the ``M`` mask tokens, then each prompt's ``n`` sparse embeddings."""
    decoder = model.mask_decoder
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    return torch.cat((output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse), dim=1)


def _candidates(model: Sam, multimask: bool) -> tuple[int, int]:
    """``(first, K)``: the mask tokens whose masks are the candidates (SAM's three, or its single one)."""
    return (1, model.mask_decoder.num_mask_tokens - 1) if multimask else (0, 1)


def _exact_decode(
    model: Sam,
    context: DecoderContext,
    sparse: torch.Tensor,
    dense: torch.Tensor | None,
    multimask: bool,
    guidance: Guidance,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.predict_masks`` and ``TwoWayTransformer.forward``, operation by operation.

    Returns ``(masks (B, K, 256, 256), scores (B, K))``, every candidate.
    """
    decoder = model.mask_decoder
    transformer = decoder.transformer
    bias, target = guidance.attention_bias, guidance.target
    batch = sparse.shape[0]
    tokens = _query_tokens(model, sparse)
    first, count = _candidates(model, multimask)
    side = context.features.shape[-1]
    if dense is None:
        dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, side, side)
    src = torch.repeat_interleave(context.features, batch, dim=0) + dense
    pos_src = torch.repeat_interleave(context.image_pe, batch, dim=0)
    b, c, h, w = src.shape
    key_pe = pos_src.flatten(2).permute(0, 2, 1)
    queries, keys = _transformer(model, tokens, src.flatten(2).permute(0, 2, 1), _ExactCrossAttention(key_pe, bias), target)
    q = queries + tokens
    if target is not None:
        q = q + target.to(q)
    attn_out = attention(transformer.final_attn_token_to_image, q, keys + key_pe, keys)
    hs = transformer.norm_final_attn(queries + attn_out)
    upscaled = decoder.output_upscaling(keys.transpose(1, 2).view(b, c, h, w))
    hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1)
    b, c, h, w = upscaled.shape
    masks = (hyper @ upscaled.view(b, c, h * w)).view(b, -1, h, w)[:, first : first + count]
    scores = decoder.iou_prediction_head(hs[:, 0, :])[:, first : first + count]
    return masks, scores


def _fast_decode(
    model: Sam,
    context: DecoderContext,
    sparse: torch.Tensor,
    dense: torch.Tensor | None,
    multimask: bool,
    guidance: Guidance,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The re-associated decoder up to the mask products: ``(image tokens (B, N, C), hyper (B, K, 32), scores (B, K))``.

    :func:`_upscale_fast` turns image tokens and hypernetwork outputs into
    logits, for whichever prompts and candidates are wanted.
    """
    decoder = model.mask_decoder
    transformer = decoder.transformer
    bias, target = guidance.attention_bias, guidance.target
    tokens = _query_tokens(model, sparse)
    first, count = _candidates(model, multimask)
    projections = context.projections
    shared_first = dense is None  # every prompt reads the same "no mask" image tokens in the first block
    keys = projections.keys if shared_first else (context.features + dense).flatten(2).permute(0, 2, 1).contiguous()
    queries, keys = _transformer(model, tokens, keys, _FastCrossAttention(projections, shared_first, bias), target)
    # Tokens attend to the image independently in the final attention: only the IoU token and
    # the candidates' mask tokens are read afterwards, so only their rows are computed.
    needed = [0, *range(1 + first, 1 + first + count)]
    q = (queries + tokens)[:, needed]
    if target is not None:
        q = q + target.to(q)
    attn_out = _fast_token_to_image(transformer.final_attn_token_to_image, q, keys, projections.pe_k[-1], None)
    hs = transformer.norm_final_attn(queries[:, needed] + attn_out)
    scores = decoder.iou_prediction_head(hs[:, 0, :])[:, first : first + count]
    mlps = decoder.output_hypernetworks_mlps[first : first + count]
    hyper = torch.stack([mlp(hs[:, 1 + i, :]) for i, mlp in enumerate(mlps)], dim=1)
    return keys, hyper, scores


def _crop_low_res(low_res: torch.Tensor, cells: tuple[int, int] | None, side: int) -> torch.Tensor:
    """The exact decoder's ``(..., 256, 256)`` logits cut to the block of ``cells`` embedding cells (all without)."""
    if cells is None:
        return low_res
    per_cell = LOW_RES_SIDE // side
    return low_res[..., : cells[0] * per_cell, : cells[1] * per_cell]


@torch.inference_mode()
def decode_masks(
    model: Sam,
    context: DecoderContext,
    sparse: torch.Tensor,
    dense: torch.Tensor | None,
    *,
    multimask: bool,
    select: CandidateSelection = "all",
    exact: bool = True,
    guidance: Guidance | None = None,
    input_hw: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM's mask decoder for a batch of ``B`` prompts on one image; ``model`` is read, never changed.

    Args:
        model: the SAM whose decoder weights are used.
        context: the image's :class:`DecoderContext` (same model, same device).
        sparse: ``(B, n, 256)`` sparse prompt embeddings (prompt encoder output).
        dense: ``(B, 256, 64, 64)`` dense embeddings of mask prompts, or
            ``None`` when no prompt of the batch has a mask (SAM's "no mask").
        multimask: SAM's three candidates (``K = 3``) or its single mask (``K = 1``).
        select: ``"all"`` candidates, the ``"best"``-scored one or the ``"first"``
            (``K' = 1``); with ``exact=False`` the others are never computed.
        exact: ``segment_anything``'s operations bit for bit, or the
            re-associated decoder (see the module docstring).
        guidance: PerSAM's target guidance, or ``None``.
        input_hw: when given, only the low-resolution block covering the
            image's ``(h, w)`` input area (``ceil(h / 4)`` x ``ceil(w / 4)``
            rounded up to a multiple of 4) is returned, enough for
            :func:`upsample_logits`; ``exact=False`` computes only that block.

    Returns:
        ``(low_res_logits (B, K', rows, cols), scores (B, K), chosen (B, K'))``:
        ``chosen`` int64 are the returned candidates' indices in ``0..K-1``;
        ``rows = cols = 256`` without ``input_hw``.
    """
    guidance = guidance or Guidance()
    side = context.features.shape[-1]
    cells = None if input_hw is None else _cropped_cells(input_hw, side)
    rows = torch.arange(sparse.shape[0], device=sparse.device)[:, None]
    if exact:
        masks, scores = _exact_decode(model, context, sparse, dense, multimask, guidance)
        chosen = chosen_candidates(scores, select)
        return _crop_low_res(masks[rows, chosen], cells, side), scores, chosen
    keys, hyper, scores = _fast_decode(model, context, sparse, dense, multimask, guidance)
    chosen = chosen_candidates(scores, select)
    return _upscale_fast(model, context.projections.upscaling, keys, hyper[rows, chosen], cells), scores, chosen


@torch.inference_mode()
def decode_scoring_above(
    model: Sam,
    context: DecoderContext,
    sparse: torch.Tensor,
    min_score: float | None,
    *,
    multimask: bool = True,
    exact: bool = True,
    input_hw: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every candidate's score, and the logits of the prompts with a candidate scoring above ``min_score``.

    :func:`decode_masks` with ``select="all"`` (no mask prompt, no guidance)
    for a caller that keeps only candidates whose predicted IoU exceeds
    ``min_score`` (segment-anything's automatic mask generator): with
    ``exact=False`` the output upscaling (about half the re-associated
    decoder's work per prompt) runs only for prompts that have such a
    candidate. The logits of those prompts equal :func:`decode_masks`'s.

    Args:
        model, context, sparse, multimask, exact, input_hw: as :func:`decode_masks`.
        min_score: keep prompts with a candidate scoring strictly above it;
            ``None`` keeps every prompt.

    Returns:
        ``(low_res_logits (P, K, rows, cols), scores (B, K), prompts (P,))``:
        ``prompts`` int64 are the increasing indices in ``0..B-1`` of the
        ``P`` prompts whose logits are returned.
    """
    guidance = Guidance()
    side = context.features.shape[-1]
    cells = None if input_hw is None else _cropped_cells(input_hw, side)
    if exact:
        masks, scores = _exact_decode(model, context, sparse, None, multimask, guidance)
    else:
        keys, hyper, scores = _fast_decode(model, context, sparse, None, multimask, guidance)
    batch = scores.shape[0]
    if min_score is None:
        prompts = torch.arange(batch, device=scores.device)
    else:
        prompts = torch.nonzero((scores > min_score).any(dim=1)).flatten()
    every = len(prompts) == batch
    if exact:
        return _crop_low_res(masks if every else masks[prompts], cells, side), scores, prompts
    if not len(prompts):
        rows, cols = (LOW_RES_SIDE, LOW_RES_SIDE) if cells is None else (c * (LOW_RES_SIDE // side) for c in cells)
        return scores.new_empty((0, scores.shape[1], rows, cols)), scores, prompts
    if not every:
        keys, hyper = keys[prompts], hyper[prompts]
    return _upscale_fast(model, context.projections.upscaling, keys, hyper, cells), scores, prompts


__all__ = [
    "DecoderContext",
    "FastProjections",
    "Guidance",
    "UpscalingProducts",
    "attention",
    "decode_masks",
    "decode_scoring_above",
    "low_res_extent",
    "upsample_logits",
]
