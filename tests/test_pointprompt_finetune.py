"""Prompt-encoder finetuning on a tiny random-init SAM (real modules)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.errors import SegpromptError
from segprompt.backends.frame import ModelFrame
from segprompt.pointprompt.finetune import FinetuneConfig, FinetuneExample, finetune_sam, low_res_target
from segprompt.pointprompt.strategies import Target, create_strategy, strategy_rng


@pytest.fixture(scope="module")
def examples():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread waits least
    segmenter = SamSegmenter(model=build_sam("tiny", seed=0))
    image = data.coins()[:96, :128]
    embedding = segmenter.embed(image)
    rgb = np.repeat(image[..., None], 3, axis=2)
    out = []
    for k, threshold in enumerate((90, 110, 130, 150, 170)):
        mask = image > threshold
        points = create_strategy("kmedoids").select(Target(rgb, mask), 3, 1, strategy_rng(0, str(k)))
        out.append(FinetuneExample.from_embedding(embedding, points, mask))
    yield segmenter.model, out
    torch.set_num_threads(threads)


def test_low_res_target_follows_sams_resize_and_padding():
    mask = np.zeros((100, 200), bool)
    mask[:, :100] = True  # left half of a 2:1 image
    target = low_res_target(mask, ModelFrame(mask.shape, (512, 1024), 1024))
    assert target.shape == (1, 1, 256, 256)
    # The image fills the top 128 low-res rows; its left half is the first 128 columns.
    assert target[0, 0, :128, :126].min() == 1.0 and target[0, 0, :128, 130:].max() == 0.0
    assert target[0, 0, 130:].max() == 0.0  # padding is background


def test_only_the_prompt_encoder_changes_and_the_loss_falls(examples):
    sam, train = examples
    model = build_sam("tiny", seed=0)
    model.load_state_dict(sam.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune_sam(model, train, FinetuneConfig(max_epochs=4, patience=4, learning_rate=1e-2))
    assert (result.n_train, result.n_validation) == (4, 1)
    assert result.train_loss[-1] < result.train_loss[0]
    assert 0 <= result.best_epoch <= len(result.train_loss)
    if result.best_epoch:  # 0 = no epoch beat the untrained model, whose weights are then kept
        assert result.validation_loss[result.best_epoch - 1] == min(result.validation_loss)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("prompt_encoder.") for k in changed)
    assert "prompt_encoder.point_embeddings.1.weight" in changed
    assert not any(p.requires_grad for p in model.parameters())
    assert 0.0 <= result.iou_after <= 1.0 and result.to_dict()["gain_percent"] == pytest.approx(result.gain_percent, nan_ok=True)


def test_decoder_option_trains_the_decoder_too(examples):
    sam, train = examples
    model = build_sam("tiny", seed=0)
    model.load_state_dict(sam.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = finetune_sam(model, train, FinetuneConfig(max_epochs=1, patience=1, train_decoder=True, learning_rate=1e-3))
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert result.best_epoch == 1  # the epoch improved validation loss, so its weights are kept
    assert changed == {"prompt_encoder", "mask_decoder"}
    assert result.iou_after > result.iou_before
    with pytest.raises(SegpromptError, match="at least 2 examples"):
        finetune_sam(model, train[:1])
