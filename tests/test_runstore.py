"""The run store: durable appends, in-place recovery, damaged files, the run identity and the inputs' digests.

The benchmark cases run the real PointPrompt and Show-or-Tell runners on
small folders the tests write (classical backend / a tiny random-init
CLIPSeg), through the command line where the user-facing message matters.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from segprompt.cli import main
from segprompt.datasets import open_dataset, write_prompts_json
from segprompt.errors import SegpromptError
from segprompt.io import read_mask, write_image, write_mask
from segprompt.pointprompt.results import RESULTS_FORMAT
from segprompt.prompts import Points, Prompt
from segprompt import runstore
from segprompt.runstore import (
    CsvRows,
    DamagedRunFileError,
    JsonRows,
    RowLog,
    RunStore,
    RunStoreError,
    RunStoreWarning,
    append_durably,
)

UNIT_CSV = CsvRows(("key", "step", "size", "value"), ("key",), frozenset({"key"}), frozenset({"step", "size"}), "size")
ROW_JSON = JsonRows(("key",), required=("value",))


def _unit(key: str, size: int, value: float = 0.5) -> list[dict]:
    return [{"key": key, "step": step, "size": size, "value": value} for step in range(size)]


# --- durable appends and recovery -------------------------------------------------------------


def test_a_torn_unit_is_cut_off_in_place_keeping_every_complete_line(tmp_path):
    path = tmp_path / "rows.csv"
    log = RowLog(path, UNIT_CSV)
    log.append(_unit("a", 2))
    log.append(_unit("b", 1))
    intact = path.read_bytes()
    inode = path.stat().st_ino
    with path.open("ab") as handle:  # killed inside the write of a 3-row unit: one full line, one torn
        handle.write(b"c,0,3,0.5\nc,1,3,0.")
    reopened = RowLog(path, UNIT_CSV)
    assert reopened.done == {("a",), ("b",)}
    assert path.read_bytes() == intact, "the torn unit is cut, nothing before it is touched"
    assert path.stat().st_ino == inode, "repaired in place (a truncation), not by rewriting the file"
    assert [r["key"] for r in reopened.rows()] == ["a", "a", "b"]
    assert not reopened.append(_unit("a", 2)), "a unit already written is never written twice"
    assert reopened.append(_unit("c", 3)) and len(list(reopened.rows())) == 6


def test_a_kill_during_recovery_loses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "rows.jsonl"
    log = RowLog(path, ROW_JSON)
    for key in "abc":
        log.append([{"key": key, "value": 1}])
    with path.open("a") as handle:
        handle.write('{"key": "d", "val')
    before = path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runstore, "truncate_durably", killed)
    with pytest.raises(KeyboardInterrupt):
        RowLog(path, ROW_JSON)
    assert path.read_bytes() == before, "an interrupted repair leaves the log as it was"
    monkeypatch.undo()
    assert RowLog(path, ROW_JSON).done == {("a",), ("b",), ("c",)}


def test_a_failed_append_is_one_line_and_leaves_the_log_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "rows.csv"
    log = RowLog(path, UNIT_CSV)
    log.append(_unit("a", 1))
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills up inside the unit's write
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runstore.os, "write", half_then_full)
    with pytest.raises(SegpromptError, match=f"^no space left on device: {path}$"):
        log.append(_unit("b", 3))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert ("b",) not in log.done and RowLog(path, UNIT_CSV).done == {("a",)}

    def read_only(fd, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(runstore.os, "write", read_only)
    with pytest.raises(SegpromptError, match=f"^read-only file system: {path}$"):
        log.append(_unit("c", 1))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_real_full_device_gives_the_one_line_error():
    with pytest.raises(SegpromptError, match="^no space left on device: /dev/full$"):
        append_durably(Path("/dev/full"), b"row\n")


def test_reorder_keeps_lines_verbatim_and_units_together(tmp_path):
    path = tmp_path / "rows.csv"
    log = RowLog(path, UNIT_CSV)
    for key, size in (("b", 2), ("a", 1), ("c", 2)):
        log.append(_unit(key, size))
    log.reorder(lambda row: {"a": 0, "b": 1, "c": 2}[row["key"]])
    assert [r["key"] for r in log.rows()] == ["a", "b", "b", "c", "c"]
    assert RowLog(path, UNIT_CSV).done == {("a",), ("b",), ("c",)}


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("a,0,1,0.5\na,0,1\n", 3, "3 fields where the header has 4"),
        ("a,0,1,0.5\nb,0,1,abc\n", 3, "column 'value' holds 'abc', not a number"),
        ("a,0,2,0.5\nb,0,1,0.5\n", 2, "unit ('a',) has 1 of its 2 rows"),
        ("a,0,1,0.5\nb,0,1,0.5\na,0,1,0.5\n", 4, "unit ('a',) appears a second time"),
    ],
)
def test_a_damaged_csv_line_is_named(tmp_path, body, line, reason):
    path = tmp_path / "rows.csv"
    path.write_text(UNIT_CSV.header + "\n" + body)
    with pytest.raises(DamagedRunFileError, match="--move-damaged") as caught:
        RowLog(path, UNIT_CSV)
    assert str(caught.value).startswith(f"{path}, line {line}: ") and reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_damaged_json_line_is_named(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"key": "a", "value": 1}\n{"key": "b", "value"\n{"key": "c", "value": 1}\n')
    with pytest.raises(DamagedRunFileError, match=f"^{path}, line 2: not a row"):
        RowLog(path, ROW_JSON)
    path.write_text('{"key": "a", "value": 1}\n{"key": "b"}\n')
    with pytest.raises(DamagedRunFileError, match="line 2: not a row .no field 'value'"):
        RowLog(path, ROW_JSON)


# --- the run folder ---------------------------------------------------------------------------


class _Files:
    """A dataset as the run store sees it: a name, a root, files per sample."""

    def __init__(self, root, name="d"):
        self.name, self.root = name, root

    def files(self, index):
        return (self.root / f"{index}.txt",)

    def shared_files(self):
        return ()


def _store(folder, data, identity=None, **kwargs):
    return RunStore(
        folder, benchmark="demo", identity=identity or {"seed": 0, "strategies": ["a"]}, options={"max_images": None},
        rows_file="rows.jsonl", rows=ROW_JSON, datasets=[data], **kwargs,
    )


def test_the_identity_is_recorded_and_a_change_is_refused_by_name(tmp_path):
    data = _Files(tmp_path)
    store = _store(tmp_path / "run", data)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["identity"] == {"seed": 0, "strategies": ["a"]}
    assert store.settings_json == (tmp_path / "run" / "run.json").read_text(), "workers get exactly what run.json says"
    with pytest.raises(RunStoreError) as caught:
        _store(tmp_path / "run", data, {"seed": 1, "strategies": ["a", "b"], "protocol": "paper"})
    message = str(caught.value)
    assert "seed was 0, now 1" in message and 'strategies was ["a"], now ["a", "b"]' in message
    assert 'protocol was not recorded, now "paper"' in message and "\n" not in message
    with pytest.raises(RunStoreError, match="holds a demo run, not other"):
        RunStore(tmp_path / "run", benchmark="other", identity={}, options={}, rows_file="rows.jsonl", rows=ROW_JSON, datasets=[])


def test_a_changed_input_is_refused_and_a_touched_one_is_rehashed_once(tmp_path):
    (tmp_path / "0.txt").write_text("old")
    data = _Files(tmp_path)
    store = _store(tmp_path / "run", data)
    store.note_sample(data, 0)
    store.log.append([{"key": "0", "value": 1}])
    inputs = tmp_path / "run" / "inputs.jsonl"
    assert len(inputs.read_text().splitlines()) == 1

    os.utime(tmp_path / "0.txt", ns=(1, 1))  # same content, other stamp: accepted, the new stamp recorded
    _store(tmp_path / "run", data)
    assert len(inputs.read_text().splitlines()) == 2
    _store(tmp_path / "run", data)
    assert len(inputs.read_text().splitlines()) == 2, "nothing to re-hash once the stamp is recorded"

    (tmp_path / "0.txt").write_text("new")
    with pytest.raises(RunStoreError, match="dataset 'd' file 0.txt has other content since this run read it"):
        _store(tmp_path / "run", data)
    (tmp_path / "0.txt").unlink()
    with pytest.raises(RunStoreError, match="file 0.txt was removed"):
        _store(tmp_path / "run", data)


def test_damaged_run_files_are_named_and_moved_aside_on_request(tmp_path):
    data = _Files(tmp_path)
    run = tmp_path / "run"
    _store(run, data).log.append([{"key": "a", "value": 1}])
    (run / "rows.jsonl").write_text('{"key": "a", "value": 1}\nnot json\n')
    with pytest.raises(DamagedRunFileError, match=f"^{run / 'rows.jsonl'}, line 2: "):
        _store(run, data)
    with pytest.warns(RunStoreWarning, match="rows.jsonl -> rows.jsonl.damaged-"):
        store = _store(run, data, move_damaged=True)
    assert store.log.done == set()
    (damaged,) = [target for source, target in store.moved if source.name == "rows.jsonl"]
    assert damaged.read_text() == '{"key": "a", "value": 1}\nnot json\n', "nothing is lost"

    (run / "run.json").write_text('{"format": 1,\n "identity": ')
    with pytest.raises(DamagedRunFileError, match=f"^{run / 'run.json'}, line 2: not JSON"):
        _store(run, data)
    (run / "run.json").write_text('{"dataset": "d"}')  # an earlier version's record
    with pytest.raises(DamagedRunFileError, match="no 'format'"):
        _store(run, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunStoreWarning)
        store = _store(run, data, move_damaged=True)
    assert {source.name for source, _ in store.moved} >= {"run.json"}
    assert json.loads((run / "run.json").read_text())["format"] == runstore.FORMAT

    store.log.append([{"key": "b", "value": 1}])
    (run / "run.json").unlink()
    with pytest.raises(DamagedRunFileError, match="no run.json records the settings"):
        _store(run, data)


# --- the benchmarks ---------------------------------------------------------------------------


def _coins(root, n=2, threshold=120):
    coins = skdata.coins()
    for i, (row, col) in enumerate([(20, 30), (100, 150), (180, 40)][:n]):
        crop = coins[row : row + 40, col : col + 56]
        write_image(root / "images" / f"c{i}.png", crop)
        write_mask(root / "masks" / f"c{i}.png", crop > threshold)
    return root


def _pointprompt(data, out, *extra):
    return main(["bench", "pointprompt", "--data", str(data), "--out", str(out), "--strategies", "distance_centre",
                 "--points", "1,0", "--no-cache", *extra])


def _error(capsys) -> str:
    """segprompt's one error line (transformers' loading bars may precede it on stderr)."""
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("segprompt ")]
    assert len(ours) == 1 and "Traceback" not in err, err
    assert ours[0].startswith("segprompt bench: error: ")
    return ours[0]


def test_pointprompt_refuses_another_folder_of_the_same_name_or_edited_ground_truth(tmp_path, capsys):
    first = _coins(tmp_path / "a" / "coins")
    out = tmp_path / "run"
    assert _pointprompt(first, out) == 0
    rows = (out / "results.csv").read_text()

    # the same data copied elsewhere resumes (nothing to add); a same-named folder with other masks does not
    copy = tmp_path / "b" / "coins"
    shutil.copytree(first, copy)
    assert _pointprompt(copy, out) == 0 and (out / "results.csv").read_text() == rows
    other = _coins(tmp_path / "c" / "coins", threshold=90)
    assert _pointprompt(other, out) == 2
    err = _error(capsys)
    assert "dataset 'coins' file masks/c0.png has other content since this run read it" in err

    # edited ground truth of a scored image: refused by name, the rows stay as they were
    mask = read_mask(first / "masks" / "c1.png")
    write_mask(first / "masks" / "c1.png", np.roll(mask, 5, axis=1) > 0)
    assert _pointprompt(first, out) == 2
    assert "file masks/c1.png has other content" in _error(capsys)
    assert (out / "results.csv").read_text() == rows


def test_pointprompt_refuses_changed_strategies_human_prompts_and_prompt_files(tmp_path, capsys):
    data = _coins(tmp_path / "coins")
    write_prompts_json(data / "prompts.json", {"c0": {"st1": [Prompt(points=Points.from_lists([[10, 10]]))]}})
    out = tmp_path / "run"
    assert _pointprompt(data, out) == 0
    assert _pointprompt(data, out, "--strategies", "distance_centre", "random") == 2
    assert 'strategies was ["distance_centre"], now ["distance_centre", "random"]' in _error(capsys)
    assert _pointprompt(data, out, "--no-human") == 2
    assert "human was true, now false" in _error(capsys)
    assert _pointprompt(data, out, "--seed", "4", "--points", "2,1") == 2
    err = _error(capsys)
    assert "seed was 0, now 4" in err and 'counts was "1,0", now "2,1"' in err
    write_prompts_json(data / "prompts.json", {"c0": {"st1": [Prompt(points=Points.from_lists([[11, 10]]))]}})
    assert _pointprompt(data, out) == 2
    assert "file prompts.json has other content" in _error(capsys)


@pytest.mark.parametrize("damaged", ["results.csv", "run.json", "inputs.jsonl"])
def test_pointprompt_damaged_run_files_exit_2_naming_the_line_then_move_aside(tmp_path, capsys, damaged):
    data = _coins(tmp_path / "coins")
    out = tmp_path / "run"
    assert _pointprompt(data, out) == 0
    path = out / damaged
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"  # a line cut short, not at the end: damage, not a torn write
    path.write_text("".join(lines))
    original = path.read_text()
    assert _pointprompt(data, out) == 2
    err = _error(capsys)
    assert f"{path}, line 2: " in err and "--move-damaged" in err
    assert path.read_text() == original, "nothing is repaired or lost without being asked"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunStoreWarning)
        assert _pointprompt(data, out, "--move-damaged") == 0
    (aside,) = out.glob(f"{damaged}.damaged-*")
    assert aside.read_text() == original
    rows = list(runstore.read_rows(out / "results.csv", RESULTS_FORMAT))
    assert sorted(r["image_id"] for r in rows) == ["c0", "c1"], "a fresh run scored every image again"


def test_configs_round_trip_through_their_recorded_identity():
    from segprompt.pointprompt import BenchmarkConfig, PointCounts
    from segprompt.showortell.runner import RunSettings

    config = BenchmarkConfig(strategies=("random", "kmedoids"), counts=PointCounts((3, 1)), seed=7, human=False,
                             max_images=5, multimask=True)
    recorded = json.loads(json.dumps(config.identity()))
    assert "max_images" not in recorded and BenchmarkConfig.from_identity(recorded, 5) == config
    settings = RunSettings(seeds=(0, 2), n_prompts=5, templates=("{}",), resize=518, max_images=3)
    assert RunSettings.from_identity(json.loads(json.dumps(settings.identity())), 3) == settings


def test_pointprompt_worker_rebuilds_only_what_run_json_records(tmp_path):
    from segprompt.pointprompt.runner import pointprompt_worker

    data = _coins(tmp_path / "coins")
    out = tmp_path / "run"
    assert _pointprompt(data, out) == 0
    settings = json.loads((out / "run.json").read_text())
    assert settings["options"]["source"]["data"] == str(data)
    score = pointprompt_worker(settings)
    scored = score((0, frozenset()))
    assert {r["image_id"] for r in scored.rows} == {"c0"}
    assert {s.path for s in scored.inputs} == {"images/c0.png", "masks/c0.png"}
    settings["identity"]["model"] = "classical:other"
    with pytest.raises(RunStoreError, match="a worker rebuilt this run with other settings .*model was"):
        pointprompt_worker(settings)


# --- Show-or-Tell -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clipseg_dir(tmp_path_factory):
    from segprompt.testing import tiny_clipseg_dir

    return tiny_clipseg_dir(tmp_path_factory.mktemp("clipseg"))


def _show_or_tell(data, out, model, *extra):
    return main(["bench", "show-or-tell", "--data", str(data), "--method", "clipseg:text", "--method", "clipseg:visual",
                 "--model-dir", f"clipseg={model}", "--max-images", "1", "--resize", "64", "--out", str(out), *extra])


def test_show_or_tell_refusals_name_the_setting_or_file(tmp_path, clipseg_dir, capsys):
    data = _coins(tmp_path / "coins", n=3)
    out = tmp_path / "run"
    assert _show_or_tell(data, out, clipseg_dir, "--seeds", "0", "1") == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    visual = [r["seconds"] for r in rows if r["method"] == "clipseg:visual"]
    assert len(visual) == 2  # one test image, two seeds
    # seconds per image is the mean time of one image under one seed, not that divided by the seeds again
    assert summary["datasets"]["coins"]["methods"]["clipseg:visual"]["seconds_per_image"] == pytest.approx(np.mean(visual))

    assert _show_or_tell(data, out, clipseg_dir, "--seeds", "0") == 2
    assert "seeds was [0, 1], now [0]" in _error(capsys)
    assert _show_or_tell(data, out, clipseg_dir, "--seeds", "0", "1", "--template", "{}") == 2
    assert 'templates was ["a photo of a {}."], now ["{}"]' in _error(capsys)
    # every training image is read for the visual references: an edited one is refused by name
    train_mask = next(p for p in sorted((data / "masks").iterdir()) if p.stem != rows[0]["image"])
    write_mask(train_mask, read_mask(train_mask) == 0)
    assert _show_or_tell(data, out, clipseg_dir, "--seeds", "0", "1") == 2
    assert f"file masks/{train_mask.name} has other content" in _error(capsys)


@pytest.mark.parametrize("damaged", ["per_image.jsonl", "run.json"])
def test_show_or_tell_damaged_run_files_exit_2_then_move_aside(tmp_path, clipseg_dir, capsys, damaged):
    data = _coins(tmp_path / "coins", n=3)
    out = tmp_path / "run"
    assert _show_or_tell(data, out, clipseg_dir) == 0
    path = out / damaged
    original = path.read_text()
    path.write_text(original.replace(":", ";", 1) if damaged == "per_image.jsonl" else "{\n  oops\n")
    damaged_text = path.read_text()
    assert _show_or_tell(data, out, clipseg_dir) == 2
    err = _error(capsys)
    assert f"{path}, line " in err and "--move-damaged" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunStoreWarning)
        assert _show_or_tell(data, out, clipseg_dir, "--move-damaged") == 0
    (aside,) = out.glob(f"{damaged}.damaged-*")
    assert aside.read_text() == damaged_text
    assert len((out / "per_image.jsonl").read_text().splitlines()) == 2  # text + visual, scored afresh


def test_the_show_or_tell_row_format_checks_the_confusion_matrix(tmp_path):
    from segprompt.showortell.runner import ROWS_FORMAT

    good = {"dataset": "d", "method": "m", "seed": 0, "image": "i", "domain": "x", "modality": "text",
            "seconds": 0.1, "matrix": [[1, 0], [0, 2]]}
    assert ROWS_FORMAT.decode(json.dumps(good)) == good
    for bad, reason in (({"matrix": [[1, 0]]}, "square"), ({"matrix": [[1, -1], [0, 2]]}, "count"),
                        ({"seed": "0"}, "'seed'")):
        with pytest.raises(ValueError, match=reason):
            ROWS_FORMAT.decode(json.dumps({**good, **bad}))


def test_sample_files_name_what_each_layout_reads(tmp_path):
    data = _coins(tmp_path / "coins")
    write_prompts_json(data / "prompts.json", {})
    (data / "splits").mkdir()
    (data / "splits" / "train.txt").write_text("c0\n")
    dataset = open_dataset(data)
    assert dataset.root == data and dataset.split("train").root == data
    assert dataset.files(0) == (data / "images" / "c0.png", data / "masks" / "c0.png")
    assert dataset.shared_files() == (data / "prompts.json", data / "splits" / "train.txt")
