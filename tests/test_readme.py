"""README.md's commands as written: they parse with the real CLI, and what the README states about them holds."""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from segprompt.cli import build_parser, parse_args
from segprompt.prompts import Box

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
DEFAULT_INSTALL = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[text,napari,dev]' && .venv/bin/segprompt demo --out demo_out"
)


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def _segprompt_commands() -> list[str]:
    """Every ``segprompt VERB ...`` invocation in the README's bash blocks, continuations joined, comments cut."""
    commands = []
    for block in _bash_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0]
            for part in line.split("&&"):
                words = part.split()
                if words and words[0].endswith("segprompt"):
                    # "[--search --trials 20]" marks optional flags: they must parse too.
                    commands.append(re.sub(r"[\[\]]", "", " ".join(words[1:])))
    return commands


def test_the_readme_has_commands_for_every_verb():
    verbs = {shlex.split(command)[0] for command in _segprompt_commands()}
    assert {"segment", "demo", "models", "bench", "tune"} <= verbs


@pytest.mark.parametrize("command", _segprompt_commands())
def test_every_readme_command_parses(command):
    # An unknown or renamed flag, a missing argument or a wrong choice exits with argparse's usage error.
    args = parse_args(build_parser(), shlex.split(command))
    assert callable(args.func)


def test_the_default_install_is_what_ci_runs_and_the_cpu_only_install_keeps_it():
    blocks = _bash_blocks()
    assert blocks[0].strip() == DEFAULT_INSTALL
    assert DEFAULT_INSTALL in (REPO / ".ci" / "run").read_text()
    cpu_only = next(block for block in blocks if "download.pytorch.org/whl/cpu" in block)
    # The alternative pre-installs torch from the CPU index, then runs the default command's own steps unchanged.
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in cpu_only
    assert "pip install -e '.[text,napari,dev]' && .venv/bin/segprompt demo --out demo_out" in cpu_only.replace("\\\n", " ")


def test_xvfb_is_explained_before_the_test_command():
    test_command = README.index(".venv/bin/python -m pytest")
    assert "apt-get install xvfb" in README[:test_command]


def test_the_box_convention_stated_in_segmenting_holds():
    segmenting = README[README.index("## Segmenting") : README.index("### Python API")]
    assert "exclusive" in segmenting and "--box 40,30,380,290" in segmenting
    # "covers columns 40-379 and rows 30-289, i.e. image[30:290, 40:380]"
    mask = np.zeros((400, 500), bool)
    mask[30:290, 40:380] = True
    assert Box.from_mask(mask) == Box(40, 30, 380, 290)


def test_the_pointprompt_example_says_how_to_run_it_small_and_how_long_it_takes():
    benchmarks = README[README.index("## Benchmarks") : README.index("### TuneVLSeg")]
    assert re.search(r"segprompt bench pointprompt [^\n]*--max-images \d+", benchmarks)
    assert re.search(r"\d+ min", benchmarks)


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_demo_output_folder_is_ignored_by_git():
    result = subprocess.run(["git", "check-ignore", "-q", "demo_out/summary.json"], cwd=REPO)
    assert result.returncode == 0
