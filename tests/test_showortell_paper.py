"""Show-or-Tell's paper protocol, rule by rule on hand-computed cases, the ADE20K background bug,
the readers it adds (Cityscapes, the reference's general folders, its released split lists), and a
``--protocol paper`` run end to end on the shared data with a tiny random-init CLIPSeg."""

from __future__ import annotations

import json
import pickle
from collections import defaultdict

import numpy as np
import pytest

from segprompt.backends.base import Embedding, Prediction
from segprompt.backends.clipseg import ClipSegSegmenter
from segprompt.backends.persam import PerSamSegmenter, PerSamTrace
from segprompt.cli import main
from segprompt.datasets import open_dataset
from segprompt.datasets.ade20k import NUM_CLASSES
from segprompt.datasets.released_splits import read_released_splits
from segprompt.errors import DatasetError, SegpromptError
from segprompt.io import write_image, write_mask
from segprompt.prompts import Points, VisualReference
from segprompt.showortell.confidence import confidence_map, merge, squash_reference
from segprompt.showortell.metrics import ConfusionMatrix
from segprompt.showortell.protocol import ClassSpace, ReferencePool, class_mask, semantic_target
from segprompt.showortell.runner import Method, ReferenceDraws, prepare_dataset, run_show_or_tell
from segprompt.showortell.settings import RunSettings
from segprompt.testing import random_clipseg, tiny_clipseg_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clipseg():
    return ClipSegSegmenter(pretrained=random_clipseg("tiny", seed=0))


def _rgb(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- ADE20K: background by index


def _ade(tmp_path):
    """A training image showing all 150 classes (2 pixels each, the top 5 rows "other") and a validation image."""
    root = tmp_path / "ADEChallengeData2016"
    train = np.zeros((20, 20), np.uint8)
    train.ravel()[100:400] = np.repeat(np.arange(1, NUM_CLASSES + 1), 2)
    val = np.array([[0, 0, 1, 1], [0, 1, 1, 2], [2, 2, 2, 2], [0, 0, 2, 2]], np.uint8)
    write_image(root / "images/training/ADE_train_00000001.png", _rgb(0, 20, 20))
    write_mask(root / "annotations/training/ADE_train_00000001.png", train)
    write_image(root / "images/validation/ADE_val_00000001.png", _rgb(1, 4, 4))
    write_mask(root / "annotations/validation/ADE_val_00000001.png", val)
    return root


def test_ade20k_other_is_background_by_index_never_prompted(tmp_path, clipseg):
    """Regression: label 0 ("other") was prompted as a class; the visual draw raised DatasetError."""
    data = prepare_dataset(open_dataset(_ade(tmp_path)), min_reference_area=0.0)
    assert "other" not in data.space.names and len(data.space.names) == NUM_CLASSES
    assert data.space.background == "ignore" and data.space.background_name == "other"
    for settings in (RunSettings(resize=16), RunSettings.for_protocol("paper", resize=16)):
        assert data.prompted_classes(settings) == data.space.names  # ADE's background is not a class
    methods = [Method("clipseg:text", clipseg, "text"), Method("clipseg:visual", clipseg, "visual")]
    summary = run_show_or_tell([data], methods, tmp_path / "run", RunSettings(resize=16))
    assert summary["datasets"]["ADEChallengeData2016"]["methods"]["clipseg:visual"]["images"] == 1
    drawn = json.loads((tmp_path / "run" / "references.json").read_text())["ADEChallengeData2016"]["0"]
    assert "other" not in drawn and len(drawn) == NUM_CLASSES


def test_ade20k_other_pixels_are_a_background_row_under_the_paper_protocol(tmp_path):
    sample = open_dataset(_ade(tmp_path)).split("val")[0]
    space = ClassSpace.for_dataset(open_dataset(_ade(tmp_path)))
    prediction = np.ones((4, 4), np.int64)  # class 1 everywhere
    ours_labels, ours_ignore = semantic_target(sample, space)
    paper_labels, paper_ignore = semantic_target(sample, space, score_background=True)
    assert ours_ignore.sum() == 5 and not paper_ignore.any()
    np.testing.assert_array_equal(paper_labels, sample.mask)
    ours = ConfusionMatrix(space.n_labels).update(prediction, ours_labels, ours_ignore)
    paper = ConfusionMatrix(space.n_labels).update(prediction, paper_labels, paper_ignore)
    # class 1: 4 true pixels; ours adds 7 false positives (class 2), the paper also the 5 "other" pixels
    assert ours.iou()[1] == pytest.approx(4 / 11) and paper.iou()[1] == pytest.approx(4 / 16)
    assert paper.matrix[0, 1] == 5 and ours.matrix[0].sum() == 0
    # background stays out of the mean: (IoU 1 + IoU 2 = 0) / 2
    assert paper.miou(space.skipped_in_mean) == pytest.approx(100 * (4 / 16) / 2)


# ---------------------------------------------------------------- VOC and Cityscapes: background as a class


def _voc(tmp_path, n: int = 3):
    root = tmp_path / "VOC2012"
    ids = []
    for i in range(n):
        labels = np.zeros((10, 10), np.uint8)
        labels[2:6, 2:6] = 15  # person
        labels[0, 0] = 255
        write_image(root / "JPEGImages" / f"2007_00000{i}.jpg", _rgb(i, 10, 10))
        write_mask(root / "SegmentationClass" / f"2007_00000{i}.png", labels)
        ids.append(f"2007_00000{i}")
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids[:-1]) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text(ids[-1] + "\n")
    return root


def test_voc_background_is_prompted_as_label_zero_with_its_own_references_in_paper_mode(tmp_path):
    data = prepare_dataset(open_dataset(_voc(tmp_path)))
    ours, paper = RunSettings(), RunSettings.for_protocol("paper")
    assert data.space.background == "keep" and data.space.background_name == "background"
    assert data.prompted_classes(ours) == data.space.names and data.merge_rule(ours) == "threshold"
    assert data.prompted_classes(paper)[0] == "background" and data.merge_rule(paper) == "argmax"
    assert data.min_reference_area == 0.02  # the reference's load_support_set(pixels_percentage=2)
    pool = ReferencePool(data.train, data.prompted_classes(paper))
    drawn, person = pool.draw_in_sequence(("background", "person"), 1, seed=0, min_area_fraction=0.02).values()
    (drawn,) = drawn
    assert person[0].reference.mask.sum() == 16
    sample = data.train.get(drawn.sample_id)
    expected = (sample.mask == 0) & ~sample.ignore  # background pixels, void excluded
    np.testing.assert_array_equal(drawn.reference.mask, expected)
    assert drawn.area_fraction == pytest.approx(83 / 100)


def test_argmax_merge_keeps_confidences_under_the_threshold_and_lets_the_background_compete():
    classes = np.array([[[0.15, 0.0]], [[0.1, 0.3]]], np.float32)  # two classes, two pixels
    background = np.array([[0.12, 0.5]], np.float32)
    # ours: 0.15 and 0.1 are under 0.2 -> background; 0.3 beats the zero background
    np.testing.assert_array_equal(merge(classes, None, "threshold"), [[0, 2]])
    # the paper (VOC): no threshold, the prompted background map competes as label 0
    np.testing.assert_array_equal(merge(classes, background, "argmax"), [[1, 0]])
    # the paper (Cityscapes, no background class): every pixel takes a class, an all-zero pixel the first
    np.testing.assert_array_equal(merge(np.zeros((2, 1, 1), np.float32), None, "argmax"), [[1]])


# ---------------------------------------------------------------- references: squash and draw


def test_references_are_squashed_to_the_scoring_side_by_nearest_neighbour():
    mask = np.zeros((30, 40), bool)
    mask[:15, 30:] = True  # top-right block
    image = _rgb(3, 30, 40)
    squashed = squash_reference(VisualReference(image, mask), 518, antialias=True)
    assert squashed.image.shape == (518, 518, 3) and squashed.mask.shape == (518, 518)
    # output row r reads source row floor(r * 30 / 518): rows < 259 are the top half; columns >= 389 read >= 30
    assert squashed.mask[258, 389] and not squashed.mask[259, 389] and not squashed.mask[258, 388]
    assert squashed.mask.sum() == 259 * (518 - 389)


def test_paper_run_gives_the_backend_references_at_518(tmp_path):
    data = prepare_dataset(open_dataset(_voc(tmp_path)))
    paper = ReferenceDraws(RunSettings.for_protocol("paper", reference_draw="per_class"))  # the fixture lacks most classes
    ours = ReferenceDraws(RunSettings(resize=64))
    assert paper.prompts(data, "person", 0)[0].reference.image.shape == (518, 518, 3)
    assert ours.prompts(data, "person", 0)[0].reference.image.shape == (10, 10, 3)  # ours: only the query is resized
    with pytest.raises(SegpromptError, match="squash_references needs a resize"):
        RunSettings.for_protocol("paper", resize=None)


def test_sequential_draw_is_the_reference_codes_global_rng_loop(shared_data):
    camvid = open_dataset(shared_data("camvid"))
    train = camvid.split("train")
    classes = ("Sky", "Car", "Pole")
    pool = ReferencePool(train, classes)
    minimum, n_prompts = 0.01, 2
    drawn = pool.draw_in_sequence(classes, n_prompts, seed=3, min_area_fraction=minimum)

    # the reference's load_support_set, literally, on numpy's global generator seeded by fix_randseed
    state = np.random.get_state()
    try:
        np.random.seed(3)
        expected = {}
        for name in classes:
            candidates = pool.candidates(name)
            names: list[str] = []
            while len(names) < n_prompts:
                pick = np.random.choice(candidates, 1, replace=False)[0]
                if len(candidates) >= n_prompts and pick in names:
                    continue
                mask = class_mask(train.get(pick), name)
                if mask.sum() <= mask.size * minimum:
                    continue
                names.append(pick)
            expected[name] = names
    finally:
        np.random.set_state(state)
    assert {name: [d.sample_id for d in refs] for name, refs in drawn.items()} == expected
    with pytest.raises(DatasetError, match="lower the minimum reference area"):
        pool.draw_in_sequence(("Pole",), 1, seed=0, min_area_fraction=0.9)


# ---------------------------------------------------------------- PerSAM's confidence


class _KnownPerSam(PerSamSegmenter):
    """PerSAM whose cascade answers a fixed mask and similarity map (the rule under test is the confidence)."""

    def __init__(self, sam, mask: np.ndarray, similarity: np.ndarray) -> None:
        super().__init__(sam=sam)
        self.answer, self.similarity = mask, similarity

    def personalise(self, reference, progress=None):
        return None

    def run(self, embedding, personalisation):
        prediction = Prediction(self.answer[None], np.array([0.9], np.float32))
        return PerSamTrace(self.similarity, Points.from_lists([[0, 0]], [[1, 1]]), [prediction])


def test_persam_confidence_is_the_mean_similarity_inside_its_mask_in_paper_mode(tiny_sam):
    mask = np.array([[True, True], [False, False]])
    similarity = np.array([[0.2, 0.4], [0.6, 0.8]], np.float32)
    persam = _KnownPerSam(tiny_sam, mask, similarity)
    embedding = Embedding("persam", persam.model_id, (2, 2), np.zeros((2, 2, 3), np.uint8))
    prompt = VisualReference(np.zeros((2, 2, 3), np.uint8), mask)
    from segprompt.prompts import Prompt

    np.testing.assert_allclose(confidence_map(persam, embedding, Prompt(reference=prompt), "similarity"), [[0.3, 0.3], [0, 0]])
    persam.answer = np.zeros((2, 2), bool)
    np.testing.assert_array_equal(confidence_map(persam, embedding, Prompt(reference=prompt), "similarity"), 0)


# ---------------------------------------------------------------- readers


def test_cityscapes_train_ids_and_the_released_split_lists(tmp_path):
    root = tmp_path / "cityscapes"
    names = {"train": ["aachen_000000_000019", "aachen_000001_000019"], "val": ["munster_000000_000019"]}
    for split, stems in names.items():
        for i, stem in enumerate(stems):
            city = stem.split("_")[0]
            labels = np.full((6, 8), 13, np.uint8)  # car
            labels[:2] = 0  # road
            labels[5, 7] = 255
            write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rgb(i, 6, 8))
            write_mask(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", labels)
    dataset = open_dataset(root)
    assert dataset.layout == "cityscapes" and dataset.class_names[0] == "road" and len(dataset.class_names) == 19
    sample = dataset.split("val")[0]
    assert sample.ignore.sum() == 1 and {o.class_name for o in sample.objects()} == {"road", "car"}
    space = ClassSpace.for_dataset(dataset)
    assert space.names[0] == "road" and space.background == "keep" and space.background_name is None

    # the released lists, pickled as the reference's (a defaultdict with numpy uint8 keys)
    splits = tmp_path / "splits"
    splits.mkdir()
    per_class = defaultdict(list, {np.uint8(0): [f"aachen/{s}_leftImg8bit.png" for s in reversed(names["train"])]})
    for split, stems in names.items():
        listed = [f"{s.split('_')[0]}/{s}_leftImg8bit.png" for s in stems]
        with (splits / f"cityscapes_{split}.pkl").open("wb") as handle:
            pickle.dump((per_class, listed), handle)
    released = read_released_splits(splits, dataset)
    assert released.train == tuple(names["train"]) and released.val == tuple(names["val"])
    assert released.candidates[0] == tuple(reversed(names["train"]))  # the file's order, kept for the draw
    data = prepare_dataset(dataset, released=released)
    assert data.candidates["road"] == tuple(reversed(names["train"])) and data.candidates["car"] == ()
    assert data.released_splits == ("cityscapes_train.pkl", "cityscapes_val.pkl")

    with (splits / "cityscapes_val.pkl").open("wb") as handle:
        pickle.dump((per_class, ["lindau/lindau_000000_000019_leftImg8bit.png"]), handle)
    with pytest.raises(DatasetError, match="1 listed images are not in 'cityscapes'"):
        read_released_splits(splits, dataset)
    (splits / "cityscapes_val.pkl").write_bytes(pickle.dumps(("payload", __import__("os").getcwd)))
    with pytest.raises(DatasetError, match="refusing to build posix.getcwd"):
        read_released_splits(splits, dataset)
    with pytest.raises(DatasetError, match="no such split file"):
        read_released_splits(tmp_path, dataset)


def test_general_folder_of_the_reference_reads_classes_splits_and_ignore(tmp_path):
    root = tmp_path / "Pizza"
    root.mkdir()
    (root / "classes.txt").write_text("background\ncheese\nsalami\n")
    for split, stem in (("train", "a_jpg.rf.1"), ("valid", "b_jpg.rf.2")):
        labels = np.zeros((5, 5), np.uint8)
        labels[1:3, 1:3] = 2
        labels[4, 4] = 255
        write_image(root / split / f"{stem}.jpg", _rgb(0, 5, 5))
        write_mask(root / "annotations" / split / f"{stem}.png", labels)
    dataset = open_dataset(root)
    assert dataset.layout == "showortell" and dataset.class_names == ("background", "cheese", "salami")
    assert dataset.split("train").ids == ["train/a_jpg.rf.1"] and dataset.split("val").ids == ["valid/b_jpg.rf.2"]
    sample = dataset.split("val")[0]
    assert sample.ignore.sum() == 1 and [o.class_name for o in sample.objects()] == ["salami"]
    space = ClassSpace.for_dataset(dataset)
    assert space.names == ("cheese", "salami") and space.background == "ignore"


# ---------------------------------------------------------------- end to end


def test_paper_protocol_runs_end_to_end_and_names_itself(shared_data, tmp_path):
    model = tiny_clipseg_dir(tmp_path / "clipseg")
    out = tmp_path / "paper"
    args = ["bench", "show-or-tell", "--protocol", "paper", "--data", str(shared_data("kvasir_seg")),
            "--method", "clipseg:text", "--method", "clipseg:visual", "--model-dir", f"clipseg={model}",
            "--max-images", "1", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "paper"
    assert summary["settings"]["reference_draw"] == "sequential" and summary["settings"]["squash_references"]
    assert json.loads((out / "run.json").read_text())["identity"]["protocol"] == "paper"
    # a resume under the other protocol is refused, naming it
    assert main([*args[:3], "ours", *args[4:]]) == 2
