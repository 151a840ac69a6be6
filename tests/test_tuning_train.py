"""Prompt tuning on real data: the loss falls, the backbone stays bit-for-bit, checkpoints restore and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segprompt.datasets import open_dataset
from segprompt.errors import CheckpointError, DatasetError, SegpromptError
from segprompt.tuning import TextOverlay, TrainConfig, TunedCLIPSeg, build_pairs, evaluate, load_base, train

SIDE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def base(tiny_clipseg_folder):
    return load_base(tiny_clipseg_folder)


@pytest.fixture
def kvasir(shared_data):
    dataset = open_dataset(shared_data("kvasir_seg"))
    return build_pairs(dataset.subset(dataset.ids[:8]), SIDE)


def _backbone(model) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def test_training_lowers_the_loss_and_leaves_the_backbone_untouched(base, tiny_clipseg_folder, kvasir, tmp_path):
    before_weights = _backbone(base.model)
    torch.manual_seed(0)
    tuned = TunedCLIPSeg.create(base, str(tiny_clipseg_folder), "maple", image_size=SIDE)
    before = evaluate(tuned, kvasir, batch_size=8)
    reports = []
    config = TrainConfig(epochs=4, batch_size=8, lr=1e-2, augment=False)
    result = train(tuned, kvasir, kvasir, tmp_path, config, progress=lambda *a: reports.append(a))
    after = evaluate(tuned, kvasir, batch_size=8)
    assert after.loss < before.loss - 0.05
    assert [r[:2] for r in reports] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(result.history) == 4 and result.history[-1]["val_loss"] == pytest.approx(after.loss, rel=1e-5)
    after_weights = base.model.state_dict()
    assert before_weights.keys() == after_weights.keys()
    assert all(torch.equal(before_weights[k], after_weights[k]) for k in before_weights)


def test_saved_prompts_reload_to_identical_logits(base, tiny_clipseg_folder, kvasir, tmp_path):
    torch.manual_seed(0)
    tuned = TunedCLIPSeg.create(base, str(tiny_clipseg_folder), "shared-sep", image_size=SIDE)
    train(tuned, kvasir[:4], kvasir[4:], tmp_path, TrainConfig(epochs=1, batch_size=4, lr=1e-2))
    meta = json.loads((tmp_path / "tuning.json").read_text())
    assert meta["method"] == "shared-sep" and meta["base_model"] == str(tiny_clipseg_folder)
    assert meta["hyperparameters"] == {"n_ctx": 4, "prompt_depth": 1, "shared_dim": 64, "projection_norm": True}
    assert meta["default_text"] == "polyp" and meta["best_epoch"] == 1
    reloaded = TunedCLIPSeg.load(tmp_path)  # loads the base model from the recorded folder
    images, texts = [p.image for p in kvasir[:3]], [p.text for p in kvasir[:3]]
    with torch.no_grad():
        tuned.net.eval()
        assert torch.equal(reloaded.logits(images, texts), tuned.logits(images, texts))
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "prompts.safetensors"))) == set(tuned.net.method.state_dict())


def test_resuming_gives_the_same_run_as_training_straight_through(base, tiny_clipseg_folder, kvasir, tmp_path):
    config = TrainConfig(epochs=2, batch_size=4, lr=1e-2)
    torch.manual_seed(0)
    straight = TunedCLIPSeg.create(base, str(tiny_clipseg_folder), "vpt-deep", image_size=SIDE)
    start = {k: v.clone() for k, v in straight.net.method.state_dict().items()}
    expected = train(straight, kvasir[:4], kvasir[4:], tmp_path / "straight", config)

    interrupted = TunedCLIPSeg.create(base, str(tiny_clipseg_folder), "vpt-deep", image_size=SIDE)
    interrupted.net.method.load_state_dict(start)
    train(interrupted, kvasir[:4], kvasir[4:], tmp_path / "resumed", TrainConfig(epochs=1, batch_size=4, lr=1e-2))
    resumed = TunedCLIPSeg.create(base, str(tiny_clipseg_folder), "vpt-deep", image_size=SIDE)
    result = train(resumed, kvasir[:4], kvasir[4:], tmp_path / "resumed", config, resume=True)

    assert [row["val_loss"] for row in result.history] == pytest.approx([row["val_loss"] for row in expected.history], rel=1e-6)
    assert torch.allclose(resumed.net.method.tokens, straight.net.method.tokens, atol=1e-6)
    with pytest.raises(SegpromptError, match="already holds a training run"):
        train(resumed, kvasir[:4], kvasir[4:], tmp_path / "resumed", config)
    other = TunedCLIPSeg.create(base, str(tiny_clipseg_folder), "coop", image_size=SIDE)
    with pytest.raises(CheckpointError, match="used 'vpt-deep'"):
        train(other, kvasir[:4], kvasir[4:], tmp_path / "resumed", config, resume=True)


def test_busi_texts_come_from_the_diagnosis_and_the_overlay_wins(shared_data, tmp_path):
    dataset = open_dataset(shared_data("busi"))
    by_diagnosis = {}
    for index in range(len(dataset)):
        by_diagnosis.setdefault(dataset[index].meta["diagnosis"], dataset.ids[index])
    chosen = dataset.subset(by_diagnosis.values())
    texts = {p.id: p.text for p in build_pairs(chosen, 32)}
    assert texts[by_diagnosis["benign"]] == "benign breast lesion"
    assert texts[by_diagnosis["malignant"]] == "malignant breast lesion"
    assert texts[by_diagnosis["normal"]] == "breast lesion"
    overlay_path = tmp_path / "texts.json"
    overlay_path.write_text(json.dumps({"default": "tumour", "texts": {by_diagnosis["benign"]: "benign tumour"}}))
    overlaid = {p.id: p.text for p in build_pairs(chosen, 32, TextOverlay.read(overlay_path))}
    assert overlaid[by_diagnosis["benign"]] == "benign tumour"
    assert overlaid[by_diagnosis["malignant"]] == overlaid[by_diagnosis["normal"]] == "tumour"
    normal = next(p for p in build_pairs(chosen, 32) if p.id == by_diagnosis["normal"])
    assert not normal.mask.any() and normal.valid.all()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read the text-prompt JSON"),
        ('{"default": ""}', "'default' must be a non-empty string"),
        ('{"texts": {"a": 3}}', r"texts\['a'\] must be a non-empty string"),
        ('{"prompts": {}}', "expected an object with keys"),
    ],
)
def test_bad_overlays_name_the_file_and_field(tmp_path, content, message):
    path = tmp_path / "texts.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        TextOverlay.read(path)
    assert str(path) in str(info.value)


def test_augmentation_moves_image_and_mask_together(kvasir):
    from segprompt.tuning.data import augment

    pair = kvasir[0]
    moved = augment(pair, np.random.default_rng(3))
    assert moved.image.shape == pair.image.shape and moved.mask.dtype == bool
    # a small affine keeps most of the object and moves the image mean by at most the jitter
    assert abs(int(moved.mask.sum()) - int(pair.mask.sum())) < 0.2 * pair.mask.sum()
    assert (moved.mask & pair.mask).sum() > 0.7 * pair.mask.sum()
    assert not np.array_equal(moved.image, pair.image)


def test_checkpoint_errors_name_the_folder(tmp_path, base):
    with pytest.raises(CheckpointError, match="tuning.json is missing"):
        TunedCLIPSeg.load(tmp_path, base)
    (tmp_path / "prompts.safetensors").write_bytes(b"")
    (tmp_path / "tuning.json").write_text('{"method": "coop", "hyperparameters": {}}')
    with pytest.raises(CheckpointError, match=r"tuning.json: not a valid tuning.json \(no base_model\)"):
        TunedCLIPSeg.load(tmp_path, base)
    (tmp_path / "tuning.json").write_text('{"format": "other/9", "method": "coop", "hyperparameters": {}, "base_model": "x"}')
    with pytest.raises(CheckpointError, match="format 'other/9' is not 'segprompt-tuning/1'"):
        TunedCLIPSeg.load(tmp_path, base)
