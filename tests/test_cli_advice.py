"""Every error's advice is runnable as written: the flags it names exist on that verb, the commands it quotes exist.

The errors are raised for real, offline (``HF_HUB_OFFLINE=1``, an empty cache,
SAM downloads failing), through :func:`segprompt.cli.main`.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pooch
import pytest

from segprompt.cli import build_parser, main
from segprompt.io import write_image

from test_cli_help import PARSERS

QUOTED = re.compile(r"`([^`]+)`")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def _executable(name: str) -> str | None:
    """``name`` in this interpreter's bin folder (the venv's console scripts), else on ``PATH``."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


def check_advice(message: str, verb: tuple[str, ...]) -> None:
    """Fail unless every flag outside quotes is an option of ``segprompt VERB`` and every quoted command runs."""
    options = {flag for action in PARSERS[verb]._actions for flag in action.option_strings}
    for flag in FLAG.findall(QUOTED.sub("", message)):
        assert flag in options, f"advice names {flag}, which `segprompt {' '.join(verb)}` does not have: {message}"
    for command in QUOTED.findall(message):
        words = shlex.split(command)
        if words[0] == "segprompt":
            build_parser().parse_args(words[1:])  # SystemExit (a failure) if the command does not parse
            continue
        program = _executable(words[0])
        assert program is not None, f"advice quotes `{command}`, but {words[0]} is not installed"
        subcommands = [w for w in words[1:] if not w.startswith("-")][:1]
        shown = subprocess.run([program, *subcommands, "--help"], capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0, f"`{words[0]} {' '.join(subcommands)} --help` failed: {shown.stderr}"
        for option in (w for w in words[1:] if w.startswith("--")):
            assert option in shown.stdout, f"advice quotes `{command}`, but {words[0]} has no {option}"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))

    def no_download(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(pooch, "retrieve", no_download)


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "image.png"
    write_image(path, np.full((32, 48, 3), 90, np.uint8))
    return str(path)


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_advice_tested_here_is_checked_against_the_right_parser():
    with pytest.raises(AssertionError, match="--model-dir, which `segprompt tune` does not have"):
        check_advice("put a copy in x or pass --model-dir DIR", ("tune",))
    with pytest.raises(AssertionError, match="no-such-tool is not installed"):
        check_advice("run `no-such-tool download x`", ("tune",))


def test_tune_offline_names_the_folder_hf_download_and_base(offline, capsys, tmp_path, shared_data):
    err = _error(capsys, ["tune", "--method", "coop", "--data", str(shared_data("kvasir_seg")), "--limit", "1",
                          "--out", str(tmp_path / "run")])
    assert "`hf download CIDAS/clipseg-rd64-refined --local-dir" in err and "pass --base DIR" in err
    check_advice(err, ("tune",))


@pytest.mark.parametrize("prompt", [["--backend", "clipseg", "--text", "cup"], ["--backend", "sam3-tracker", "--point", "5,5"]])
def test_segment_offline_transformers_backend_names_model_dir(offline, capsys, image_file, tmp_path, prompt):
    err = _error(capsys, ["segment", image_file, *prompt, "--out", str(tmp_path / "m.png")])
    assert "pass --model-dir DIR" in err
    check_advice(err, ("segment",))  # SAM 3's licence note quotes `hf auth login` too


def test_segment_sam_without_checkpoint_names_the_file_and_checkpoint_flag(offline, capsys, image_file, tmp_path):
    err = _error(capsys, ["segment", image_file, "--backend", "sam", "--point", "5,5", "--out", str(tmp_path / "m.png")])
    assert "sam_vit_b_01ec64.pth" in err and "pass --checkpoint PATH" in err
    check_advice(err, ("segment",))


def test_pointprompt_sam_offline_names_checkpoint(offline, capsys, tmp_path, shared_data):
    err = _error(capsys, ["bench", "pointprompt", "--data", str(shared_data("grabcut_scribbles")), "--backend", "sam",
                          "--out", str(tmp_path / "run")])
    assert "pass --checkpoint PATH" in err
    check_advice(err, ("bench", "pointprompt"))


def test_show_or_tell_offline_names_model_dir(offline, capsys, tmp_path, shared_data):
    err = _error(capsys, ["bench", "show-or-tell", "--data", str(shared_data("kvasir_seg")), "--method", "clipseg:text",
                          "--out", str(tmp_path / "run")])
    assert "pass --model-dir [BACKEND=]DIR" in err
    check_advice(err, ("bench", "show-or-tell"))


def test_models_fetch_offline_advises_no_flag_models_lacks(offline, capsys):
    err = _error(capsys, ["models", "--fetch", "vit_b"])
    assert "download https://" in err
    check_advice(err, ("models",))
