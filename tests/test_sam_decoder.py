"""The one SAM mask decoder (segprompt.backends.sam_decoder): exact and fast numerics, PerSAM guidance, its context."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from skimage import data as skdata

from segprompt.backends.sam_decoder import (
    DecoderContext,
    Guidance,
    attention,
    decode_masks,
    low_res_extent,
)
from segprompt.prompts import Box, MaskPrompt, Points, Prompt

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE = skdata.astronaut()[40:250, 30:410]  # 210 x 380: a non-square frame


@pytest.fixture(scope="module")
def embedding(tiny_sam):
    return tiny_sam.embed(IMAGE)


def _prompts(with_mask: bool) -> list[Prompt]:
    mask = MaskPrompt(IMAGE[..., 0] > 150) if with_mask else None  # a mask prompt makes every layer's image tokens per-prompt
    return [
        Prompt(points=Points([[20, 30], [60, 80]], [1, 0]), box=Box(10, 10, 150, 200), mask=mask),
        Prompt(points=Points([[200, 100], [300, 20]], [1, 1]), box=Box(120, 5, 370, 200), mask=mask),
    ]


@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask-prompt"])
def test_fast_decoder_matches_the_exact_decoder(tiny_sam, embedding, with_mask):
    sparse, dense = tiny_sam.encode_prompts(_prompts(with_mask), embedding.frame)
    context = embedding.decoder_context(tiny_sam.model)
    for multimask in (True, False):
        exact, exact_scores, chosen = decode_masks(tiny_sam.model, context, sparse, dense, multimask=multimask, exact=True)
        fast, scores, fast_chosen = decode_masks(tiny_sam.model, context, sparse, dense, multimask=multimask, exact=False)
        torch.testing.assert_close(fast, exact, atol=1e-5, rtol=0)
        torch.testing.assert_close(scores, exact_scores, atol=1e-6, rtol=0)
        assert torch.equal(chosen, fast_chosen) and chosen.shape == (2, 3 if multimask else 1)
        cropped, _, _ = decode_masks(
            tiny_sam.model, context, sparse, dense, multimask=multimask, exact=False, input_hw=embedding.input_hw
        )
        rows, cols = low_res_extent(embedding.input_hw)
        assert rows <= cropped.shape[2] < 256 or cols <= cropped.shape[3] < 256
        torch.testing.assert_close(cropped, fast[..., : cropped.shape[2], : cropped.shape[3]])
        for select in ("best", "first"):
            one, _, picked = decode_masks(tiny_sam.model, context, sparse, dense, multimask=multimask, select=select, exact=False)
            expected = exact_scores.argmax(dim=1) if select == "best" else torch.zeros(2, dtype=torch.int64)
            assert torch.equal(picked[:, 0], expected)
            torch.testing.assert_close(one[:, 0], exact[torch.arange(2), expected], atol=1e-5, rtol=0)


@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask-prompt"])
def test_persam_guidance_is_the_same_in_both_numerics(tiny_sam, embedding, with_mask):
    sparse, dense = tiny_sam.encode_prompts(_prompts(with_mask), embedding.frame)
    context = embedding.decoder_context(tiny_sam.model)
    guidance = Guidance(
        attention_bias=torch.rand(1, 1, 1, 4096, generator=torch.Generator().manual_seed(6)),
        target=torch.randn(256, generator=torch.Generator().manual_seed(7)),
    )
    plain, _, _ = decode_masks(tiny_sam.model, context, sparse, dense, multimask=True)
    exact, exact_scores, _ = decode_masks(tiny_sam.model, context, sparse, dense, multimask=True, guidance=guidance)
    fast, scores, _ = decode_masks(tiny_sam.model, context, sparse, dense, multimask=True, guidance=guidance, exact=False)
    assert not torch.allclose(plain, exact)
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=0)
    torch.testing.assert_close(scores, exact_scores, atol=1e-6, rtol=0)


def test_exact_attention_is_segment_anythings_bit_for_bit(tiny_sam):
    generator = torch.Generator().manual_seed(4)
    for attn in (layer.cross_attn_token_to_image for layer in tiny_sam.model.mask_decoder.transformer.layers):
        q, k = torch.randn(2, 7, 256, generator=generator), torch.randn(2, 4096, 256, generator=generator)
        with torch.no_grad():
            assert torch.equal(attention(attn, q, k, k), attn(q=q, k=k, v=k))


def test_guided_attention_follows_a_dominant_bias(tiny_sam):
    attn = tiny_sam.model.mask_decoder.transformer.layers[0].cross_attn_token_to_image
    keys = torch.randn(1, 4096, 256, generator=torch.Generator().manual_seed(4))
    queries = torch.randn(1, 7, 256, generator=torch.Generator().manual_seed(5))
    bias = torch.zeros(1, 1, 1, 4096)
    bias[..., 123] = 50.0  # after the re-normalising softmax, all weight goes to key 123
    with torch.no_grad():
        out = attention(attn, queries, keys, keys, bias)
        expected = attn.out_proj(attn.v_proj(keys[:, 123]))[:, None].expand(1, 7, 256)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_the_context_lives_in_the_embedding_and_is_built_once(tiny_sam):
    embedding = tiny_sam.embed(IMAGE)
    contexts: list[DecoderContext] = []
    projections = []

    def use() -> None:
        context = embedding.decoder_context(tiny_sam.model)
        contexts.append(context)
        projections.append(context.projections)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(context is contexts[0] for context in contexts)
    assert all(item is projections[0] for item in projections)
    assert contexts[0].features.device == torch.device(tiny_sam.model.device)
    # a copy (another process, a deep copy) rebuilds its own context
    import copy

    twin = copy.deepcopy(embedding)
    assert twin.decoder_context(tiny_sam.model) is not contexts[0]
    assert torch.equal(twin.features, embedding.features)


def test_decoding_never_changes_the_model(tiny_sam, embedding):
    state = {name: tensor.clone() for name, tensor in tiny_sam.model.state_dict().items()}
    modules = [type(module) for module in tiny_sam.model.modules()]
    sparse, dense = tiny_sam.encode_prompts(_prompts(False), embedding.frame)
    guidance = Guidance(attention_bias=torch.rand(1, 1, 1, 4096), target=torch.randn(256))
    for exact in (True, False):
        decode_masks(tiny_sam.model, embedding.decoder_context(tiny_sam.model), sparse, dense, multimask=True, guidance=guidance, exact=exact)
    assert [type(module) for module in tiny_sam.model.modules()] == modules
    assert all(torch.equal(tensor, state[name]) for name, tensor in tiny_sam.model.state_dict().items())
    assert np.isfinite(tiny_sam.predict(embedding, _prompts(False)[0]).scores).all()
