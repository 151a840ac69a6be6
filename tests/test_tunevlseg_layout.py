"""The TuneVLSeg ``anns/{train,val,test}.json`` layout and its per-image text prompts, on a folder the test writes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from segprompt.datasets import DatasetWarning, open_dataset
from segprompt.errors import DatasetError
from segprompt.io import write_image, write_mask
from segprompt.tuning import build_pairs, tuning_parts
from segprompt.tuning.data import batches


@pytest.fixture
def anns_root(tmp_path):
    root = tmp_path / "kvasir_polyp"
    rng = np.random.default_rng(0)
    square = np.zeros((20, 24), np.uint8)
    square[5:15, 6:18] = 255
    for name, folder in (("a", ""), ("b", ""), ("c", ""), ("d", "test/")):
        write_image(root / "images" / f"{folder}{name}.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    write_mask(root / "masks" / "a.png", square)
    write_mask(root / "masks" / "b.png", (square > 0).astype(np.uint8))  # a 0/1 mask
    grey = square.copy()
    grey[5, 6:18] = 130  # JPEG-like grey edge: object from 128 up
    grey[14, 6:18] = 90
    write_mask(root / "masks" / "c.png", grey)
    write_mask(root / "masks" / "test" / "d.png", square)  # CAMUS keeps the test split in subfolders
    tasks = {
        "train": [
            {"img_name": "a.png", "mask_name": "a.png", "prompts": {"p0": "", "p1": "polyp", "p2": ["pink polyp", "a polyp"]}},
            {"img_name": "b.png", "mask_name": "b.png", "prompts": {"p0": "", "p1": "polyp.", "p2": "round polyp"}},
            {"img_name": "missing.png", "mask_name": "a.png", "prompts": {"p1": "polyp"}},
            {"img_name": "a.png", "mask_name": "a.png", "prompts": {"p1": 3}},
        ],
        "val": [{"img_name": "c.png", "mask_name": "c.png", "prompts": {"p0": "", "p1": "polyp", "p2": "flat polyp"}}],
        "test": [{"img_name": "d.png", "mask_name": "d.png", "prompts": {"p0": "", "p1": "polyp", "p2": "small polyp"}}],
    }
    (root / "anns").mkdir()
    for split, content in tasks.items():
        (root / "anns" / f"{split}.json").write_text(json.dumps(content))
    return root


def test_anns_tasks_become_samples_with_their_splits_and_prompts(anns_root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = open_dataset(anns_root)
    assert dataset.layout == "tunevlseg" and dataset.name == "kvasir_polyp"
    assert sorted(dataset.split_names) == ["test", "train", "val"]
    assert dataset.split("train").ids == ["a", "b"] and dataset.split("val").ids == ["c"] and dataset.split("test").ids == ["d"]
    reasons = sorted(str(p) for p in dataset.problems)
    assert len(reasons) == 2 and all(str(anns_root / "anns" / "train.json") in r for r in reasons)
    assert "task 2: no file images/missing.png" in reasons[0] and "task 3: prompts['p1'] must be a phrase" in reasons[1]
    assert all(issubclass(w.category, DatasetWarning) for w in caught)
    a, b, c, d = (dataset.get(i) for i in "abcd")
    assert a.mask_kind == "binary" and a.class_names == ("object",) and a.mask.sum() == 10 * 12
    assert np.array_equal(b.mask, a.mask) and np.array_equal(d.mask, a.mask)
    assert c.mask.sum() == 9 * 12  # the 130 row counts, the 90 row does not
    assert a.meta["text_prompts"]["p2"] == ["pink polyp", "a polyp"]


#: The fixture's two bad tasks are reported (and asserted) in the first test; later tests only skip them.
skips_bad_tasks = pytest.mark.filterwarnings("ignore::segprompt.datasets.DatasetWarning")


@skips_bad_tasks
def test_text_prompts_are_picked_by_key_with_lists_drawn_in_training(anns_root):
    train = open_dataset(anns_root).split("train")
    p1 = build_pairs(train, 16)
    assert [p.text for p in p1] == ["polyp", "polyp."] and all(not p.alternatives for p in p1)
    p2 = build_pairs(train, 16, prompt_key="p2", full_stop=True)
    assert [(p.text, p.alternatives) for p in p2] == [("pink polyp.", ("a polyp.",)), ("round polyp.", ())]
    drawn = {batch.texts[0] for batch in (next(batches(p2[:1], 1, np.random.default_rng(i))) for i in range(40))}
    assert drawn == {"pink polyp.", "a polyp."}
    assert next(batches(p2[:1], 1)).texts == ["pink polyp."]  # evaluation uses the first phrase
    randomly = build_pairs(train, 16, prompt_key="random")
    assert (randomly[0].text, randomly[0].alternatives) == ("polyp", ("pink polyp", "a polyp"))  # every key but p0
    with pytest.raises(DatasetError, match=r"no text prompt 'p7' \(has p0, p1, p2\)"):
        build_pairs(train, 16, prompt_key="p7")


@skips_bad_tasks
def test_the_split_files_give_the_three_tuning_parts(anns_root):
    parts = tuning_parts(open_dataset(anns_root), with_test=True)
    assert (parts.train.ids, parts.val.ids, parts.test.ids, parts.source) == (["a", "b"], ["c"], ["d"], "split files")
    with pytest.raises(DatasetError, match="no split 'holdout'; its split files give"):
        tuning_parts(open_dataset(anns_root), test_split="holdout")
    (anns_root / "anns" / "test.json").unlink()
    with pytest.raises(DatasetError, match="a test split is needed beside 'val'"):
        tuning_parts(open_dataset(anns_root), with_test=True)
    assert tuning_parts(open_dataset(anns_root)).test is None
