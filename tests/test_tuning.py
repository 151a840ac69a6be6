"""Prompted CLIPSeg: exact reproduction without prompts, gradients only on prompts, each method's effect."""

from __future__ import annotations

import pytest
import torch

from segprompt.errors import SegpromptError
from segprompt.tuning import PromptedCLIPSeg, TunedCLIPSeg, create_method, dice_bce_loss, method_names

SIDE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_registry_lists_every_method():
    assert method_names() == ["coop", "cocoop", "vpt-shallow", "vpt-deep", "maple", "shared-attn", "shared-sep"]


def test_without_prompts_the_logits_equal_clipseg_bit_for_bit(tiny_clipseg_base, clipseg_batch):
    pixels, ids, mask = clipseg_batch
    assert mask[0].sum() < mask.shape[1]  # the batch really has padding
    with torch.no_grad():
        expected = tiny_clipseg_base.model(input_ids=ids, pixel_values=pixels, attention_mask=mask).logits
        got = PromptedCLIPSeg(tiny_clipseg_base.model, None)(pixels, ids, mask)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["coop", "cocoop", "vpt-shallow", "vpt-deep", "maple", "shared-attn", "shared-sep"])
def test_method_changes_the_output_and_only_prompts_get_gradients(tiny_clipseg_base, clipseg_batch, name):
    pixels, ids, mask = clipseg_batch
    with torch.no_grad():
        plain = PromptedCLIPSeg(tiny_clipseg_base.model, None)(pixels, ids, mask)
    torch.manual_seed(0)
    dims = PromptedCLIPSeg.dims_of(tiny_clipseg_base.model, tiny_clipseg_base.processor.tokenizer)
    net = PromptedCLIPSeg(tiny_clipseg_base.model, create_method(name, dims)).train()
    logits = net(pixels, ids, mask)
    assert logits.shape == (2, SIDE, SIDE)
    assert (logits - plain).abs().max() > 1e-3
    target = torch.zeros_like(logits)
    dice_bce_loss(logits, target, torch.ones_like(logits)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.method.parameters())
    assert all(not p.requires_grad and p.grad is None for p in tiny_clipseg_base.model.parameters())
    assert not tiny_clipseg_base.model.training


def test_trainable_counts_match_hand_computed_sizes(tiny_clipseg_base):
    dims = PromptedCLIPSeg.dims_of(tiny_clipseg_base.model, tiny_clipseg_base.processor.tokenizer)
    # tiny model: text width 32, vision width 32, projection 16, 2 layers per tower
    count = {name: create_method(name, dims).num_trainable() for name in method_names()}
    assert count["coop"] == 4 * 32
    assert count["vpt-shallow"] == 4 * 32
    assert count["vpt-deep"] == 2 * 4 * 32  # depth min(9, 2)
    assert count["cocoop"] == 4 * 32 + (16 * 64 + 64) + (64 * 32 + 32) + 2 * 32
    assert count["maple"] == 2 * 4 * 32 + 2 * ((32 * 64 + 64) + (64 * 32 + 32) + 2 * 32)
    assert count["shared-sep"] == 4 * 64 + 2 * ((64 * 32 + 32) + 2 * 32)
    layer = torch.nn.TransformerEncoderLayer(64, 16, 1536, batch_first=True, norm_first=True)
    assert count["shared-attn"] == 4 * 64 + sum(p.numel() for p in layer.parameters())


def test_coop_starts_from_the_embedding_of_a_photo_of_a(tiny_clipseg_base):
    dims = PromptedCLIPSeg.dims_of(tiny_clipseg_base.model, tiny_clipseg_base.processor.tokenizer)
    torch.manual_seed(0)
    coop = create_method("coop", dims, prompt_depth=2)
    table = tiny_clipseg_base.model.clip.text_model.embeddings.token_embedding.weight
    # CLIP ids of "a photo of a": a=320, photo=1125, of=539
    assert torch.equal(coop.context[0].detach(), table[[320, 1125, 539, 320]])
    assert 0.01 < coop.context[1].detach().std() < 0.03  # deeper context: N(0, 0.02)


def test_context_makes_room_in_clips_77_positions(tiny_clipseg_base):
    tuned = TunedCLIPSeg.create(tiny_clipseg_base, "tiny", "coop", image_size=SIDE)
    ids, _ = tuned.tokenize(["polyp " * 100])
    assert ids.shape[1] == 77 - 4
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407  # truncation keeps BOS and EOS (the pooled token)
    assert tuned.logits([torch.zeros(SIDE, SIDE, 3, dtype=torch.uint8).numpy()], ["polyp " * 100]).shape == (1, SIDE, SIDE)


def test_visual_prompts_are_stripped_before_the_decoder(tiny_clipseg_base, clipseg_batch):
    pixels, _, _ = clipseg_batch
    dims = PromptedCLIPSeg.dims_of(tiny_clipseg_base.model, tiny_clipseg_base.processor.tokenizer)
    net = PromptedCLIPSeg(tiny_clipseg_base.model, create_method("vpt-deep", dims))
    plain = PromptedCLIPSeg(tiny_clipseg_base.model, None).encode_image(pixels, [], with_features=False)
    prompted = net.encode_image(pixels, net.method().vision, with_features=False)
    assert [a.shape for a in prompted.activations] == [a.shape for a in plain.activations] == [(2, 17, 32)] * 2


def test_cocoop_shifts_the_context_per_image(tiny_clipseg_base, clipseg_batch):
    pixels, _, _ = clipseg_batch
    dims = PromptedCLIPSeg.dims_of(tiny_clipseg_base.model, tiny_clipseg_base.processor.tokenizer)
    net = PromptedCLIPSeg(tiny_clipseg_base.model, create_method("cocoop", dims))
    features = net.encode_image(pixels, [], with_features=True).image_features
    context = net.method(features).text[0]
    assert context.shape == (2, 4, 32)
    assert not torch.allclose(context[0], context[1])


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("nope", {}, "unknown tuning method 'nope'"),
        ("coop", {"prompt_depth": 3}, "prompt_depth=3 must be between 1 and 2"),
        ("coop", {"context_init": "a photo"}, "is 2 tokens but n_ctx=4"),
        ("shared-attn", {"heads": 5}, "heads=5 must divide the shared width 64"),
        ("vpt-shallow", {"prompt_depth": 2}, "use vpt-deep"),
        ("maple", {"n_ctx": 0}, "n_ctx=0 must be at least 1"),
        ("coop", {"colour": 1}, "unexpected keyword argument 'colour'"),
    ],
)
def test_bad_method_options_are_user_errors(tiny_clipseg_base, name, options, message):
    dims = PromptedCLIPSeg.dims_of(tiny_clipseg_base.model, tiny_clipseg_base.processor.tokenizer)
    with pytest.raises(SegpromptError, match=message):
        create_method(name, dims, **options)


def test_dice_bce_loss_matches_a_hand_computed_value():
    logits = torch.tensor([[[0.0, 2.0], [-2.0, 10.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    valid = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])  # the confident false positive is ignored
    p = torch.sigmoid(logits)[0].flatten()[:3]
    dice = 1 - (2 * (p[0] + p[1]) + 1e-5) / (p.sum() + 2 + 1e-5)
    bce = (-torch.log(p[0]) - torch.log(p[1]) - torch.log(1 - p[2])) / 3
    assert torch.isclose(dice_bce_loss(logits, target, valid), dice + 0.2 * bce)
