"""Progress off a terminal: long jobs log lines to a file or pipe (tqdm shows nothing there)."""

import io
import os
import subprocess
import sys

from segprompt.cli.progress import progress_line, tqdm_progress


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_every_interval_once_the_job_runs_that_long_and_the_last_state_at_exit():
    stream, clock = io.StringIO(), FakeClock()
    with tqdm_progress("image", stream=stream, interval_s=10.0, clock=clock) as progress:
        for done in range(6):
            progress(done, 5, f"img{done}")
            clock.now += 4.0  # 4 s per image: a line at 12 s and at 24 s, the rest throttled
    lines = stream.getvalue().splitlines()
    assert lines == [
        "progress: image 3/5 (60%), 12s elapsed, ~8s left: img3",
        "progress: image 5/5 (100%), 24s elapsed: img5",
    ]


def test_a_quick_job_stays_quiet():
    stream, clock = io.StringIO(), FakeClock()
    with tqdm_progress("step", stream=stream, interval_s=10.0, clock=clock) as progress:
        progress(0, 1, "embedding")
        clock.now += 2.0
        progress(1, 1, "done")
    assert stream.getvalue() == ""


def test_line_format_without_a_total_and_over_an_hour():
    assert progress_line("sample", 7, 0, "", 3725.0) == "progress: sample 7, 1h02m elapsed"
    assert progress_line("epoch", 1, 4, "val 0.5", 90.0) == "progress: epoch 1/4 (25%), 1m30s elapsed, ~4m30s left: val 0.5"


def test_a_verb_run_through_a_pipe_logs_progress(tmp_path):
    # The real CLI with stderr a pipe, a line for every call (interval 0).
    images, masks = tmp_path / "data" / "images", tmp_path / "data" / "masks"
    images.mkdir(parents=True), masks.mkdir(parents=True)
    import numpy as np

    from segprompt.io import write_image, write_mask

    for k in range(3):
        write_image(images / f"s{k}.png", np.full((8, 8, 3), 40 * k, np.uint8))
        write_mask(masks / f"s{k}.png", np.eye(8, dtype=bool))
    result = subprocess.run(
        [sys.executable, "-m", "segprompt", "datasets", "inspect", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "SEGPROMPT_PROGRESS_INTERVAL": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert "progress: sample 3/3 (100%)" in result.stderr
