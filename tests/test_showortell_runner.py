"""Show-or-Tell end to end on real shared data with a tiny random-init CLIPSeg."""

import csv
import json

import cv2
import numpy as np
import pytest

from segprompt.backends.clipseg import ClipSegSegmenter
from segprompt.cli import main
from segprompt.datasets import open_dataset
from segprompt.errors import SegpromptError
from segprompt.showortell.metrics import ConfusionMatrix
from segprompt.showortell.protocol import semantic_target
from segprompt.semantic import segment_classes
from segprompt.showortell.runner import Method, RunSettings, prepare_dataset, run_show_or_tell
from segprompt.testing import random_clipseg, tiny_clipseg_dir


@pytest.fixture(scope="module")
def clipseg():
    return ClipSegSegmenter(pretrained=random_clipseg("tiny", seed=0))


def _methods(segmenter):
    return [Method("clipseg:text", segmenter, "text"), Method("clipseg:visual", segmenter, "visual")]


def test_run_scores_every_class_and_matches_a_recomputed_confusion_matrix(shared_data, clipseg, tmp_path):
    camvid = prepare_dataset(open_dataset(shared_data("camvid")))
    settings = RunSettings(seeds=(0, 1), max_images=1, resize=128)
    summary = run_show_or_tell([camvid], _methods(clipseg), tmp_path, settings)

    rows = [json.loads(line) for line in (tmp_path / "per_image.jsonl").read_text().splitlines()]
    # 1 image x (1 text run + 2 visual seeds)
    assert len(rows) == 3
    # Recompute the text method's matrix for the first image from the backend directly.
    sample = camvid.test[0]
    labels, ignore = semantic_target(sample, camvid.space)
    image = cv2.resize(sample.image, (128, 128), interpolation=cv2.INTER_LINEAR)
    labels = cv2.resize(labels.astype(np.int32), (128, 128), interpolation=cv2.INTER_NEAREST)
    ignore = cv2.resize(ignore.astype(np.uint8), (128, 128), interpolation=cv2.INTER_NEAREST).astype(bool)
    seg = segment_classes(image, {n: f"a photo of a {n}." for n in camvid.space.names}, clipseg)
    expected = ConfusionMatrix(camvid.space.n_labels).update(seg.labels, labels, ignore)
    first = next(r for r in rows if r["method"] == "clipseg:text" and r["image"] == sample.id)
    np.testing.assert_array_equal(first["matrix"], expected.matrix)

    entry = summary["datasets"]["camvid"]
    assert entry["domain"] == "urban" and entry["background"] == "ignore"
    visual = entry["methods"]["clipseg:visual"]
    assert set(visual["miou_per_seed"]) == {"0", "1"}
    assert visual["miou"]["n"] == 2
    assert np.isclose(visual["miou"]["mean"], np.mean(list(visual["miou_per_seed"].values())))
    with open(tmp_path / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {r["seed"] for r in table if r["modality"] == "text"} == {""}
    assert {r["seed"] for r in table if r["modality"] == "visual"} == {"0", "1"}
    assert set(r["class"] for r in table) <= set(camvid.space.names)
    refs = json.loads((tmp_path / "references.json").read_text())["camvid"]
    assert set(refs) == {"0", "1"} and set(refs["0"]) == set(camvid.space.names)
    for path in ("summary.json", "domains.png", "text_vs_visual.png"):
        assert (tmp_path / path).stat().st_size > 0


def test_killed_run_resumes_without_losing_or_repeating_rows(shared_data, clipseg, tmp_path):
    kvasir = prepare_dataset(open_dataset(shared_data("kvasir_seg")))
    settings = RunSettings(seeds=(0,), max_images=3, resize=96)
    full = run_show_or_tell([kvasir], _methods(clipseg), tmp_path / "full", settings)

    calls = []

    def kill_after_two(done, total, message):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_show_or_tell([kvasir], _methods(clipseg), tmp_path / "resumed", settings, kill_after_two)
    # a kill mid-write leaves a torn last line: the resume must drop it
    with open(tmp_path / "resumed" / "per_image.jsonl", "a") as handle:
        handle.write('{"dataset": "kvas')
    resumed = run_show_or_tell([kvasir], _methods(clipseg), tmp_path / "resumed", settings)

    lines = (tmp_path / "resumed" / "per_image.jsonl").read_text().splitlines()
    keys = [(r["method"], r["seed"], r["image"]) for r in map(json.loads, lines)]
    assert len(keys) == len(set(keys)) == 6
    for name in ("clipseg:text", "clipseg:visual"):
        assert resumed["datasets"]["kvasir_seg"]["methods"][name]["miou"] == full["datasets"]["kvasir_seg"]["methods"][name]["miou"]
    assert (tmp_path / "full" / "results.csv").read_text() == (tmp_path / "resumed" / "results.csv").read_text()

    with pytest.raises(SegpromptError, match="other settings"):
        run_show_or_tell([kvasir], _methods(clipseg), tmp_path / "full", RunSettings(seeds=(5,), max_images=3))


def test_cli_runs_two_datasets_and_reports_user_errors(shared_data, tmp_path, capsys):
    model = tiny_clipseg_dir(tmp_path / "clipseg")
    out = tmp_path / "run"
    args = ["bench", "show-or-tell", "--data", str(shared_data("kvasir_seg")), str(shared_data("skin_lesion_isic_ham")),
            "--method", "clipseg:text", "--method", "clipseg:visual", "--model-dir", f"clipseg={model}",
            "--max-images", "1", "--resize", "96", "--template", "a photo of a {}.", "--template", "{}",
            "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["datasets"]) == {"kvasir_seg", "skin_lesion_isic_ham"}
    assert set(summary["domains"]) == {"medical"}
    assert "oracle" in capsys.readouterr().out

    assert main(["bench", "show-or-tell", "--data", str(shared_data("kvasir_seg")), "--method", "clipseg",
                 "--out", str(tmp_path / "bad")]) == 2
    assert "BACKEND:MODALITY" in capsys.readouterr().err
    assert main(["bench", "show-or-tell", "--data", str(shared_data("kvasir_seg")), "--method", "sam:text",
                 "--checkpoint", str(tmp_path / "none.pth"), "--out", str(tmp_path / "bad")]) == 2


def test_two_workers_write_the_one_process_results(shared_data, tmp_path):
    model = tiny_clipseg_dir(tmp_path / "clipseg")
    common = ["bench", "show-or-tell", "--data", str(shared_data("kvasir_seg")), "--method", "clipseg:text",
              "--method", "clipseg:visual", "--model-dir", f"clipseg={model}", "--max-images", "3", "--resize", "96"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert main([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0  # finished: adds nothing
    lines = (tmp_path / "two" / "per_image.jsonl").read_text().splitlines()
    keys = [(r["method"], r["seed"], r["image"]) for r in map(json.loads, lines)]
    assert len(keys) == len(set(keys)) == 3 * 2
    for name in ("results.csv", "references.json"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text(), name
    assert main([*common, "--out", str(tmp_path / "bad"), "--workers", "0"]) == 2


def test_sam3_text_and_visual_methods_end_to_end(shared_data, tmp_path):
    """``sam3:text`` is SAM 3 on the class name; ``sam3:visual`` the reference-image route (a reference from a
    training image -> OWLv2's image-guided boxes on the test image -> SAM 3's exemplars): tiny model folders."""
    from segprompt.showortell.runner import RunSource
    from segprompt.testing import tiny_owlv2_dir, tiny_sam3_dir

    sam3, owlv2 = tiny_sam3_dir(tmp_path / "sam3"), tiny_owlv2_dir(tmp_path / "owlv2")
    source = RunSource(data=[str(shared_data("kvasir_seg"))], methods=["sam3:text", "sam3:visual"],
                       model_dirs={"sam3": str(sam3), "owlv2-sam": str(owlv2)})  # fmt: skip
    datasets, methods = source.build()
    assert [(m.name, m.segmenter.name, m.modality) for m in methods] == [
        ("sam3:text", "sam3", "text"), ("sam3:visual", "sam3-reference", "visual")
    ]
    route = methods[1].segmenter
    assert route.exemplar_proposer.name == "owlv2-sam" and route.shares_backbone
    settings = RunSettings(seeds=(0,), max_images=1, resize=96, templates=("{}",))
    summary = run_show_or_tell(datasets, methods, tmp_path / "run", settings)

    rows = [json.loads(line) for line in (tmp_path / "run" / "per_image.jsonl").read_text().splitlines()]
    assert sorted((r["method"], r["seed"]) for r in rows) == [("sam3:text", -1), ("sam3:visual", 0)]
    kvasir = datasets[0]
    sample = kvasir.test[0]
    labels, ignore = semantic_target(sample, kvasir.space)
    image = cv2.resize(sample.image, (96, 96), interpolation=cv2.INTER_LINEAR)
    labels = cv2.resize(labels.astype(np.int32), (96, 96), interpolation=cv2.INTER_NEAREST)
    ignore = cv2.resize(ignore.astype(np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST).astype(bool)
    seg = segment_classes(image, {n: n.replace("_", " ") for n in kvasir.space.names}, methods[0].segmenter)
    expected = ConfusionMatrix(kvasir.space.n_labels).update(seg.labels, labels, ignore)
    text_row = next(r for r in rows if r["method"] == "sam3:text")
    np.testing.assert_array_equal(text_row["matrix"], expected.matrix)

    # the visual row: the run's drawn reference through the route by hand
    from segprompt.showortell.runner import ReferenceDraws

    (polyp,) = kvasir.space.names
    (prompt,) = ReferenceDraws(settings).prompts(kvasir, polyp, 0)
    answer = route.predict(route.embed(image), prompt)
    visual = segment_classes(image, {polyp: prompt.reference}, route)
    np.testing.assert_array_equal(visual.confidences[0], answer.probabilities)
    visual_row = next(r for r in rows if r["method"] == "sam3:visual")
    expected = ConfusionMatrix(kvasir.space.n_labels).update(visual.labels, labels, ignore)
    np.testing.assert_array_equal(visual_row["matrix"], expected.matrix)
    methods_summary = summary["datasets"]["kvasir_seg"]["methods"]
    assert methods_summary["sam3:visual"]["backend"] == "sam3-reference"
    assert methods_summary["sam3:text"]["modality"] == "text" and methods_summary["sam3:visual"]["miou"]["n"] == 1
