"""The paper protocol's rules, each pinned to a hand-computed case (TuneVLSeg's reference code)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from segprompt.datasets import open_dataset
from segprompt.errors import CheckpointError, SegpromptError
from segprompt.tuning import ModelOptions, PromptedCLIPSeg, TrainConfig, TunedCLIPSeg, build_pairs, create_method, get_protocol
from segprompt.tuning.data import (
    PAPER_AFFINE_P,
    PAPER_JITTER_P,
    Pair,
    _warp,
    augment_paper,
    brightness_contrast,
    draw_paper_augmentation,
    paper_affine_matrix,
    tuning_parts,
)
from segprompt.tuning.search import run_search
from segprompt.tuning.run import RunData
from segprompt.tuning.train import EarlyStopping, improves, mask_scores, train, weight_decay_groups

SIDE = 64

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dims(tiny_clipseg_base):
    return PromptedCLIPSeg.dims_of(tiny_clipseg_base.model, tiny_clipseg_base.processor.tokenizer)


@pytest.fixture
def kvasir(shared_data):
    dataset = open_dataset(shared_data("kvasir_seg"))
    return build_pairs(dataset.subset(dataset.ids[:8]), SIDE)


# --- metrics -------------------------------------------------------------------------------------------------------


def _masks(*cells: list[tuple[int, int]]) -> list[np.ndarray]:
    out = []
    for pixels in cells:
        mask = np.zeros((4, 4), bool)
        for row, col in pixels:
            mask[row, col] = True
        out.append(mask)
    return out


def test_dice_of_an_empty_prediction_on_an_empty_target_is_one_and_jaccard_accumulates():
    # sample A: nothing predicted, nothing there -> Dice = IoU = 1 (torchmetrics' zero_division=1)
    # sample B: target 4 pixels, prediction 4 pixels, 2 shared -> Dice 2*2/8 = 0.5, IoU 2/6
    targets = _masks([], [(0, 0), (0, 1), (1, 0), (1, 1)])
    preds = _masks([], [(0, 0), (0, 1), (3, 3), (3, 2)])
    valid = [np.ones((4, 4), bool)] * 2
    mean_dice, mean_iou, jaccard = mask_scores(preds, targets, valid)
    assert mean_dice == pytest.approx((1.0 + 0.5) / 2)  # zero_division=0 would give 0.25
    assert mean_iou == pytest.approx((1.0 + 2 / 6) / 2)
    # accumulated over the set: (0 + 2) / (0 + 6); it differs from the mean of per-sample Jaccards
    assert jaccard == pytest.approx(2 / 6)
    assert jaccard != pytest.approx(mean_iou)
    # an empty prediction on a non-empty target scores 0; an all-empty set has Jaccard 1
    assert mask_scores(_masks([]), _masks([(2, 2)]), valid[:1]) == (0.0, 0.0, 0.0)
    assert mask_scores(_masks([]), _masks([]), valid[:1]) == (1.0, 1.0, 1.0)


# --- early stopping and checkpoint selection -----------------------------------------------------------------------


def test_early_stopping_counts_epochs_not_better_by_more_than_delta():
    stopping = EarlyStopping(patience=3, delta=0.1)
    # 1.0 best; 0.95 is not below 0.9 (bad 1); 0.85 is (best, bad 0); 0.8, 0.79, 0.78 are not below 0.75 (bad 1, 2, 3)
    assert [stopping.update(v) for v in (1.0, 0.95, 0.85, 0.8, 0.79, 0.78)] == [False] * 5 + [True]
    assert stopping.best == 0.85
    plain = EarlyStopping(patience=3, delta=0.0)
    assert not any(plain.update(v) for v in (1.0, 0.95, 0.85, 0.8, 0.79, 0.78))
    assert EarlyStopping(patience=12).update(math.nan)  # Lightning's check_finite stops at once


def test_paper_patience_and_delta_stop_a_slowly_creeping_loss_at_epoch_13():
    paper = get_protocol("paper").train_config("coop")
    stopping = EarlyStopping(paper.early_stop_patience, paper.early_stop_delta)
    # falls every epoch, but never more than 9e-5 below the first epoch's loss: never better by more than 1e-4
    losses = [1.0 - 9e-5 * (1 - 0.5**epoch) for epoch in range(20)]
    stops = [stopping.update(loss) for loss in losses]
    assert stops.index(True) + 1 == 13
    ours = EarlyStopping(TrainConfig().early_stop_patience, TrainConfig().early_stop_delta)
    assert not any(ours.update(loss) for loss in losses)


def test_checkpoint_selection_is_strict_in_its_direction():
    assert improves(0.5, math.nan, "val_dice") and improves(0.6, 0.5, "val_dice") and not improves(0.5, 0.5, "val_dice")
    assert improves(0.4, 0.5, "val_loss") and not improves(0.6, 0.5, "val_loss") and not improves(math.nan, 0.5, "val_loss")


# --- augmentation --------------------------------------------------------------------------------------------------


def test_paper_augmentation_applies_affine_and_jitter_each_with_probability_0_2():
    rng = np.random.default_rng(0)
    draws = [draw_paper_augmentation(rng, 64) for _ in range(5000)]
    affine = np.array([d.matrix is not None for d in draws])
    jitter = np.array([d.jitter is not None for d in draws])
    tolerance = 3 * math.sqrt(0.2 * 0.8 / len(draws))
    assert abs(affine.mean() - PAPER_AFFINE_P) < tolerance and abs(jitter.mean() - PAPER_JITTER_P) < tolerance
    assert abs((affine & jitter).mean() - PAPER_AFFINE_P * PAPER_JITTER_P) < tolerance  # independent
    alphas, betas = np.array([d.jitter for d in draws if d.jitter is not None]).T
    assert alphas.min() >= 0.9 and alphas.max() <= 1.1 and betas.min() >= -0.1 and betas.max() <= 0.1
    # the linear part holds scale 0.98-1.02 per axis and rotation within 5 degrees: its column norms are the scales
    scales = np.array([np.linalg.norm(d.matrix[:, :2], axis=0) for d in draws if d.matrix is not None])
    assert scales.min() >= 0.98 - 1e-9 and scales.max() <= 1.02 + 1e-9
    assert np.ptp(scales[:, 0] - scales[:, 1]) > 0.01  # the two axes are drawn independently


def test_paper_brightness_contrast_scales_from_zero_and_truncates_like_albumentations():
    image = np.array([[[0, 100, 250]]], np.uint8)
    # alpha 1.1, beta 0.05: v * 1.1 + 12.75 -> 12.75, 122.75, 287.75 -> 12, 122, 255 (LUT truncation, clipped)
    assert brightness_contrast(image, 1.1, 0.05).tolist() == [[[12, 122, 255]]]


def test_paper_affine_replicates_the_border_and_keeps_its_centre():
    size = 8
    image = np.repeat(np.repeat((np.arange(size) * 30).astype(np.uint8)[None, :, None], size, 0), 3, 2)
    mask = np.zeros((size, size), bool)
    mask[:, 5:] = True
    pair = Pair("a", "polyp", image, mask, np.ones((size, size), bool))
    moved = _warp(pair, paper_affine_matrix(size, (1.0, 1.0), (2.0, 0.0), 0.0), cv2.INTER_CUBIC, cv2.BORDER_REPLICATE)
    assert (moved.image[:, :2] == image[:, :1]).all()  # replicated first column, not black
    assert (moved.image[:, 2:] == image[:, :-2]).all() and (moved.mask[:, 7:]).all() and not moved.mask[:, :7].any()
    rotation = paper_affine_matrix(size, (1.02, 0.98), (0.0, 0.0), 90.0)
    centre = (size - 1) / 2
    assert np.allclose(rotation @ [centre, centre, 1.0], [centre, centre])
    rng = np.random.default_rng(5)
    unchanged = sum(augment_paper(pair, rng).image.tobytes() == image.tobytes() for _ in range(400))
    assert abs(unchanged / 400 - 0.8 * 0.8) < 0.08


# --- method internals ----------------------------------------------------------------------------------------------


def test_reference_shared_attention_leaves_tokens_unmixed(dims):
    torch.manual_seed(0)
    paper = create_method("shared-attn", dims, heads=2, mix_tokens=False).eval()
    ours = create_method("shared-attn", dims, heads=2).eval()
    ours.load_state_dict(paper.state_dict())
    with torch.no_grad():
        before_paper, before_ours = paper(), ours()
        paper.shared[0, 0] += 1.0
        ours.shared[0, 0] += 1.0
        after_paper, after_ours = paper(), ours()
    # paper: only token 0 moves; ours: the other tokens move too (they attend to token 0)
    assert not torch.equal(after_paper.text[0][0], before_paper.text[0][0])
    assert torch.equal(after_paper.text[0][1:], before_paper.text[0][1:]) and torch.equal(after_paper.vision[0][1:], before_paper.vision[0][1:])
    assert not torch.allclose(after_ours.text[0][1:], before_ours.text[0][1:])
    # by hand: a length-1 attention is out_proj(v_proj(norm1 x)); then the pre-norm feed-forward
    layer, x = paper.mixers[0], paper.shared[0].detach()
    width = x.shape[-1]
    value = nn.functional.linear(layer.norm1(x), layer.self_attn.in_proj_weight[2 * width :], layer.self_attn.in_proj_bias[2 * width :])
    hidden = x + layer.self_attn.out_proj(value)
    expected = hidden + layer.linear2(torch.relu(layer.linear1(layer.norm2(hidden))))
    with torch.no_grad():
        got = torch.cat([after_paper.text[0], after_paper.vision[0]], dim=-1)
        assert torch.allclose(got, expected.detach(), atol=1e-6)


def test_reference_internals_of_shared_separate_cocoop_and_maple(dims, tiny_clipseg_base):
    torch.manual_seed(0)
    separate = create_method("shared-sep", dims, projection_norm=False)
    assert all(type(m) is nn.Linear for m in (*separate.to_text, *separate.to_vision))
    assert separate.num_trainable() == 4 * 64 + 2 * (64 * 32 + 32)

    cocoop = create_method("cocoop", dims, **get_protocol("paper").method_hyperparameters("cocoop"))
    first, _, last, norm = cocoop.meta_nets[0]
    assert last.bias is None and norm.bias is None  # the reference's bias-free tail (use_final_bias=False)
    features = torch.randn(1, 16)
    # without normalisation the bias depends on the feature's length; with it, only on its direction
    assert not torch.allclose(cocoop(features).text[0], cocoop(2 * features).text[0])
    ours = create_method("cocoop", dims)
    assert torch.allclose(ours(features).text[0], ours(2 * features).text[0], atol=1e-5)

    maple = create_method("maple", dims, **get_protocol("paper").method_hyperparameters("maple"))
    table = tiny_clipseg_base.model.clip.text_model.embeddings.token_embedding.weight
    assert maple.hyperparameters["prompt_depth"] == 1 and maple.hyperparameters["context_init"] is None
    assert not torch.equal(maple.context[0].detach(), table[[320, 1125, 539, 320]])  # not "a photo of a"
    assert 0.01 < maple.context.detach().std() < 0.03  # N(0, 0.02)
    assert maple.couplings[0][2].bias is None and maple.couplings[0][3].bias is not None


# --- model: extra last layer and prompts through the decoder --------------------------------------------------------


@pytest.mark.parametrize(("mix", "expected"), [("blend", lambda plain: 0.5 * plain + 0.5 * 2.0), ("add", lambda plain: plain + 2.0)])
def test_extra_last_layer_joins_the_logits(tiny_clipseg_base, clipseg_batch, mix, expected):
    pixels, ids, mask = clipseg_batch
    with torch.no_grad():
        plain = PromptedCLIPSeg(tiny_clipseg_base.model, None)(pixels, ids, mask)
        net = PromptedCLIPSeg(tiny_clipseg_base.model, None, ModelOptions(extra_layer=mix))
        net.extra_layer.conv.weight.zero_()
        net.extra_layer.conv.bias.fill_(2.0)  # the conv then outputs 2 everywhere
        got = net(pixels, ids, mask)
    assert torch.allclose(got, expected(plain), atol=1e-6)
    assert net.extra_layer.conv.kernel_size == (5, 5) and net.extra_layer.conv.padding_mode == "replicate"
    assert (net.num_trainable() == 16 * 25 + 1 + 1) if mix == "blend" else (net.num_trainable() == 16 * 25 + 1)


def test_visual_prompts_reach_the_decoder_layers_only_in_the_reference_order(tiny_clipseg_base, clipseg_batch, dims):
    pixels, ids, mask = clipseg_batch
    torch.manual_seed(0)
    method = create_method("vpt-deep", dims)
    stripped = PromptedCLIPSeg(tiny_clipseg_base.model, method)
    kept = PromptedCLIPSeg(tiny_clipseg_base.model, method, ModelOptions(prompts_in_decoder=True))
    with torch.no_grad():
        acts = kept.encode_image(pixels, method().vision, with_features=False).activations
        assert [a.shape for a in acts] == [(2, 17 + 4, 32)] * 2
        # layer 0's activation carries the prompts written for layer 1, as the reference's in-place overwrite does
        assert torch.allclose(acts[0][:, 17:], method.tokens[1].expand(2, -1, -1))
        a, b = stripped(pixels, ids, mask), kept(pixels, ids, mask)
    assert a.shape == b.shape == (2, SIDE, SIDE) and not torch.allclose(a, b)


def test_extra_layer_is_saved_resumed_and_reloaded(tiny_clipseg_base, tiny_clipseg_folder, kvasir, tmp_path):
    options = get_protocol("paper").model_options("maple")
    assert options == ModelOptions(extra_layer="blend", prompts_in_decoder=True)
    torch.manual_seed(0)
    tuned = TunedCLIPSeg.create(tiny_clipseg_base, str(tiny_clipseg_folder), "maple", SIDE, options)
    config = TrainConfig(epochs=1, batch_size=4, lr=1e-2)
    train(tuned, kvasir[:4], kvasir[4:], tmp_path, config)
    reloaded = TunedCLIPSeg.load(tmp_path, tiny_clipseg_base)
    assert reloaded.net.options == options
    assert torch.equal(reloaded.net.extra_layer.residual_ratio, tuned.net.extra_layer.residual_ratio)
    assert tuned.net.extra_layer.residual_ratio.item() != 0.5  # it learns
    other = TunedCLIPSeg.create(tiny_clipseg_base, str(tiny_clipseg_folder), "maple", SIDE)
    with pytest.raises(CheckpointError, match="model options"):
        train(other, kvasir[:4], kvasir[4:], tmp_path, TrainConfig(epochs=2, batch_size=4), resume=True)


# --- training loop rules -------------------------------------------------------------------------------------------


def test_resuming_under_another_protocol_is_refused_naming_it(tiny_clipseg_base, tiny_clipseg_folder, kvasir, tmp_path):
    torch.manual_seed(0)
    tuned = TunedCLIPSeg.create(tiny_clipseg_base, str(tiny_clipseg_folder), "coop", SIDE)
    train(tuned, kvasir[:4], kvasir[4:], tmp_path, TrainConfig(epochs=1, batch_size=4))
    with pytest.raises(CheckpointError, match="used protocol 'ours', not 'paper'; use another --out or --protocol ours"):
        train(tuned, kvasir[:4], kvasir[4:], tmp_path, TrainConfig(protocol="paper", epochs=2, batch_size=4), resume=True)


def test_two_accumulated_batches_of_two_step_like_one_batch_of_four(tiny_clipseg_base, tiny_clipseg_folder, kvasir, tmp_path):
    def trained(batch_size: int, accumulate: int):
        torch.manual_seed(0)
        tuned = TunedCLIPSeg.create(tiny_clipseg_base, str(tiny_clipseg_folder), "coop", SIDE)
        config = TrainConfig(epochs=1, batch_size=batch_size, accumulate_batches=accumulate, lr=1e-2, augment=False)
        train(tuned, kvasir[:4], kvasir[4:], tmp_path / f"{batch_size}x{accumulate}", config)
        return tuned.net.method.context.detach()

    start = trained(4, 1)
    assert torch.allclose(trained(2, 2), start, atol=1e-6)
    assert not torch.allclose(trained(2, 1), start, atol=1e-4)  # two steps instead of one


def test_weight_decay_only_on_linear_and_projection_weights(dims):
    method = create_method("shared-attn", dims, heads=2)
    decayed, kept = weight_decay_groups(method, 1e-3)
    names = {id(p): n for n, p in method.named_parameters()}
    assert decayed["weight_decay"] == 1e-3 and kept["weight_decay"] == 0.0
    assert {names[id(p)] for p in decayed["params"]} == {
        "mixers.0.self_attn.in_proj_weight", "mixers.0.self_attn.out_proj.weight", "mixers.0.linear1.weight", "mixers.0.linear2.weight",
    }  # fmt: skip
    assert "shared" in {names[id(p)] for p in kept["params"]}  # prompt vectors, biases and norms do not decay
    (everything,) = weight_decay_groups(method, 0.0)
    assert [id(p) for p in everything["params"]] == [id(p) for p in method.parameters()]


def test_paper_preset_takes_the_reference_values():
    paper, ours = get_protocol("paper"), get_protocol("ours")
    coop, maple = paper.train_config("coop"), paper.train_config("maple")
    assert (coop.epochs, coop.batch_size, coop.accumulate_batches, coop.select_on) == (20, 32, 1, "val_dice")
    assert (maple.batch_size, maple.accumulate_batches) == (16, 2)
    assert (coop.early_stop_patience, coop.early_stop_delta, coop.lr, coop.weight_decay, coop.seed) == (12, 1e-4, 2e-4, 0.0, 12345)
    assert coop.augmentation == "paper" and paper.interpolation == "cubic" and paper.full_stop
    assert paper.base_model == "CIDAS/clipseg-rd64" and ours.base_model == "CIDAS/clipseg-rd64-refined"
    assert paper.train_config("coop", epochs=3).epochs == 3  # explicit options win
    assert paper.method_hyperparameters("shared-attn") == {"mix_tokens": False}
    assert paper.method_hyperparameters("vpt-deep", prompt_depth=4) == {"prompt_depth": 4}
    assert paper.model_options("vpt-deep", extra_layer=True).extra_layer == "add"
    assert paper.model_options("coop").extra_layer is None and ours.model_options("maple") == ModelOptions()
    assert TrainConfig().protocol == "ours" and ours.train_config("coop") == TrainConfig()
    with pytest.raises(SegpromptError, match="unknown protocol 'mine'"):
        get_protocol("mine")
    with pytest.raises(SegpromptError, match="select_on='val_iou' must be one of val_loss, val_dice"):
        TrainConfig(select_on="val_iou").check()


def test_paper_parts_are_a_seeded_three_way_split(shared_data):
    dataset = open_dataset(shared_data("kvasir_seg"))
    parts = tuning_parts(dataset, with_test=True)
    train_ids, val_ids, test_ids = set(parts.train.ids), set(parts.val.ids), set(parts.test.ids)
    assert (len(train_ids), len(val_ids), len(test_ids)) == (56, 7, 7) and parts.source == "seeded 80/10/10"
    assert not (train_ids & val_ids or train_ids & test_ids or val_ids & test_ids)
    assert val_ids | test_ids == set(dataset.split("val").ids)  # the held-out 20 % of our split, halved
    ours = tuning_parts(dataset)
    assert ours.test is None and set(ours.val.ids) == val_ids | test_ids


# --- search --------------------------------------------------------------------------------------------------------


def test_a_killed_search_resumes_to_the_same_trials(tiny_clipseg_base, tiny_clipseg_folder, kvasir, tmp_path):
    data = RunData(kvasir[:4], kvasir[4:6], kvasir[6:], {"dataset": "kvasir_seg"})
    config = TrainConfig(protocol="paper", epochs=1, batch_size=4, select_on="val_dice")
    calls = []

    def build(params, fail_at=None):
        calls.append(params)
        if len(calls) == fail_at:
            raise KeyboardInterrupt  # the process is killed while trial 1 starts
        torch.manual_seed(0)
        return TunedCLIPSeg.create(tiny_clipseg_base, str(tiny_clipseg_folder), "coop", SIDE, **params)

    options = dict(max_depth=2, objective="last_val_loss", seed=12345, trials=3)
    straight = run_search(build, data, tmp_path / "straight", config, **options)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        run_search(lambda p: build(p, fail_at=2), data, tmp_path / "killed", config, **options)
    with pytest.raises(SegpromptError, match="already holds a search"):
        run_search(build, data, tmp_path / "killed", config, **options)
    with pytest.raises(SegpromptError, match="used protocol 'paper'"):
        run_search(build, data, tmp_path / "killed", TrainConfig(epochs=1, batch_size=4), **options, resume=True)
    resumed = run_search(build, data, tmp_path / "killed", config, **options, resume=True)
    assert [t["params"] for t in resumed["search"]["trials"]] == [t["params"] for t in straight["search"]["trials"]]
    assert [t["value"] for t in resumed["search"]["trials"]] == pytest.approx([t["value"] for t in straight["search"]["trials"]])
    assert resumed["search"]["best_trial"] == straight["search"]["best_trial"]
    assert resumed["test"] == pytest.approx(straight["test"]) and resumed["protocol"] == "paper"
    params = [t["params"] for t in straight["search"]["trials"]]
    assert all(1e-5 <= p["lr"] <= 5e-3 and 1e-5 <= p["weight_decay"] <= 1e-2 and p["prompt_depth"] in (1, 2) for p in params)
    assert len({p["lr"] for p in params}) == 3
    assert (tmp_path / "killed" / "prompts.safetensors").is_file() and (tmp_path / "killed" / "summary.json").is_file()
