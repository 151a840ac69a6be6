"""``segprompt tune`` end to end on a tiny CLIPSeg and real kvasir images, and the tuned segmenter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from segprompt.backends import create_from_options
from segprompt.cli import main
from segprompt.errors import UnsupportedPromptError
from segprompt.io import read_mask, write_image
from segprompt.datasets import open_dataset
from segprompt.prompts import Box, Prompt, Text
from segprompt.tuning.segmenter import TunedClipSegSegmenter


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tune(data, base, out, *extra):
    return main(
        ["tune", "--method", "coop", "--data", str(data), "--base", str(base), "--out", str(out),
         "--image-size", "64", "--limit", "4", "--batch-size", "4", *extra]
    )


def test_tune_trains_resumes_and_the_checkpoint_segments(shared_data, tiny_clipseg_folder, tmp_path, capsys):
    data = shared_data("kvasir_seg")
    out = tmp_path / "run"
    assert _tune(data, tiny_clipseg_folder, out, "--epochs", "1") == 0
    printed = capsys.readouterr().out
    assert "tune coop (ours protocol): 128 trainable parameters, 4 training / 4 validation pairs" in printed
    meta = json.loads((out / "tuning.json").read_text())
    assert meta["method"] == "coop" and meta["base_model"] == str(tiny_clipseg_folder.resolve()) and meta["image_size"] == 64

    assert _tune(data, tiny_clipseg_folder, out, "--epochs", "1") == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert _tune(data, tiny_clipseg_folder, out, "--epochs", "2", "--resume") == 0
    state = torch.load(out / "last.pt", weights_only=True)
    assert [row["epoch"] for row in state["history"]] == [1, 2]

    segmenter = create_from_options("clipseg-tuned", checkpoint=str(out), device="cpu")
    assert isinstance(segmenter, TunedClipSegSegmenter)
    assert segmenter.default_text == "polyp"
    image = open_dataset(data)[0].image
    prediction = segmenter.segment(image, Prompt(text=Text("polyp")))
    assert prediction.masks.shape == (1, *image.shape[:2])
    assert prediction.probabilities.dtype == np.float32
    inside = prediction.probabilities[prediction.masks[0]]
    assert prediction.scores[0] == pytest.approx(float(inside.mean()) if inside.size else 0.0)
    with pytest.raises(UnsupportedPromptError, match="does not accept box"):
        segmenter.segment(image, Prompt(box=Box(0.0, 0.0, 10.0, 10.0)))

    image_path = tmp_path / "image.png"
    write_image(image_path, image)
    for text in ([], ["--text", "polyp"]):  # the checkpoint's default text is "polyp"
        mask_path = tmp_path / f"mask{len(text)}.png"
        assert main(["segment", str(image_path), "--tuned", str(out), "--out", str(mask_path), *text]) == 0
        assert np.array_equal(read_mask(mask_path) > 0, prediction.masks[0])
    assert "(clipseg-tuned)" in capsys.readouterr().err
    assert main(["segment", str(image_path), "--tuned", str(out), "--backend", "sam", "--out", str(mask_path)]) == 2
    assert "--tuned segments with the clipseg-tuned backend" in capsys.readouterr().err


def test_tune_user_errors_exit_2(shared_data, tiny_clipseg_folder, tmp_path, capsys):
    data = shared_data("kvasir_seg")
    assert _tune(data, tiny_clipseg_folder, tmp_path / "a", "--method", "shared-attn", "--heads", "5") == 2
    assert "heads=5 must divide the shared width 64" in capsys.readouterr().err
    assert _tune(tmp_path / "missing", tiny_clipseg_folder, tmp_path / "b") == 2
    assert _tune(data, tmp_path, tmp_path / "c") == 2
    assert "not a model folder" in capsys.readouterr().err


def test_tune_paper_protocol_end_to_end_names_the_protocol(shared_data, tiny_clipseg_folder, tmp_path, capsys):
    data = shared_data("kvasir_seg")
    out = tmp_path / "paper"
    args = ("--protocol", "paper", "--method", "shared-attn", "--heads", "2", "--epochs", "1", "--extra-layer")
    assert _tune(data, tiny_clipseg_folder, out, *args) == 0
    printed = capsys.readouterr().out
    assert "tune shared-attn (paper protocol)" in printed and "4 training / 4 validation / 4 test pairs" in printed
    assert "(on val_dice): test Dice" in printed and "Jaccard (accumulated)" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == summary["settings"]["protocol"] == "paper"
    assert summary["selected_on"] == "val_dice" and summary["data"]["parts"] == "seeded 80/10/10"
    assert summary["data"]["interpolation"] == "cubic" and summary["data"]["full_stop"] is True
    assert summary["hyperparameters"]["mix_tokens"] is False
    assert summary["model_options"] == {"extra_layer": "blend", "prompts_in_decoder": True}
    assert (summary["settings"]["batch_size"], summary["settings"]["accumulate_batches"]) == (4, 2)  # --batch-size wins
    assert set(summary["test"]) == {"loss", "dice", "iou", "jaccard"}
    meta = json.loads((out / "tuning.json").read_text())
    assert meta["train_config"]["protocol"] == "paper" and meta["default_text"] == "polyp."
    assert _tune(data, tiny_clipseg_folder, out, "--method", "shared-attn", "--heads", "2", "--epochs", "2", "--resume") == 2
    assert "used protocol 'paper', not 'ours'; use another --out or --protocol paper" in capsys.readouterr().err

    searched = tmp_path / "search"
    assert _tune(data, tiny_clipseg_folder, searched, "--protocol", "paper", "--epochs", "1", "--search", "--trials", "2") == 0
    summary = json.loads((searched / "summary.json").read_text())
    assert summary["protocol"] == "paper" and len(summary["search"]["trials"]) == 2
    assert summary["search"]["sampler"]["seed"] == 12345 and summary["search"]["objective"] == "last_val_loss"
    assert (searched / "prompts.safetensors").is_file() and (searched / "search.db").is_file()
