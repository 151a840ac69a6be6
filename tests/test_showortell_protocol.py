import numpy as np
import pytest

from segprompt.datasets import open_dataset
from segprompt.datasets.base import Sample
from segprompt.errors import DatasetError
from segprompt.showortell.protocol import ClassSpace, ReferencePool, class_mask, semantic_target, text_prompts


def _semantic_sample():
    mask = np.array([[0, 1, 2], [2, 3, 3]])
    ignore = np.array([[False, False, False], [False, False, True]])
    classes = ("background", "cat", "dog", "tree")
    return Sample("s", np.zeros((2, 3, 3), np.uint8), mask, "semantic", classes, ignore, meta={"background_index": 0})


def test_semantic_target_maps_classes_by_name_and_ignores_unevaluated_ones():
    space = ClassSpace(("dog", "cat"))
    labels, ignore = semantic_target(_semantic_sample(), space)
    # background -> 0, cat -> 2, dog -> 1, tree is not evaluated -> ignored, as is the sample's ignore pixel
    np.testing.assert_array_equal(labels, [[0, 2, 1], [1, 0, 0]])
    np.testing.assert_array_equal(ignore, [[False, False, False], [False, True, True]])


def test_binary_and_instance_samples_become_one_class_over_background():
    inst = Sample("n", np.zeros((2, 2, 3), np.uint8), np.array([[0, 1], [2, 2]], np.uint16), "instance", ("nucleus",))
    labels, ignore = semantic_target(inst, ClassSpace(("nucleus",)))
    np.testing.assert_array_equal(labels, [[0, 1], [1, 1]])
    assert not ignore.any()
    with pytest.raises(DatasetError, match="'nucleus' is not in the evaluated classes"):
        semantic_target(inst, ClassSpace(("polyp",)))


def test_text_prompts_fill_templates_and_reject_templates_without_placeholder():
    assert [t.phrase for t in text_prompts("traffic_light", ("a photo of a {}.", "{}"))] == [
        "a photo of a traffic light.",
        "traffic light",
    ]
    with pytest.raises(DatasetError, match="placeholder"):
        text_prompts("cat", ("a photo",))


def test_references_come_from_training_images_of_the_class_seeded_and_distinct(shared_data):
    camvid = open_dataset(shared_data("camvid"))
    space = ClassSpace.for_dataset(camvid)
    assert space.names[0] == "Sky" and space.background == "ignore" and len(space.names) == 11
    train = camvid.split("train")
    pool = ReferencePool(train, space.names)
    first = pool.draw("Car", 5, seed=0, min_area_fraction=0.01)
    again = pool.draw("Car", 5, seed=0, min_area_fraction=0.01)
    other = pool.draw("Car", 5, seed=1, min_area_fraction=0.01)
    assert [d.sample_id for d in first] == [d.sample_id for d in again]
    assert [d.sample_id for d in first] != [d.sample_id for d in other]
    assert len({d.sample_id for d in first}) == 5  # enough training images show cars
    assert set(d.sample_id for d in first) <= set(train.ids)
    for drawn in first:
        sample = train.get(drawn.sample_id)
        np.testing.assert_array_equal(drawn.reference.mask, class_mask(sample, "Car"))
        assert drawn.area_fraction > 0.01
    with pytest.raises(DatasetError, match="lower the minimum reference area"):
        pool.draw("Pole", 1, seed=0, min_area_fraction=0.9)
    with pytest.raises(DatasetError, match="not in the reference pool"):
        pool.draw("Dog", 1, seed=0)


def test_semantic_folder_split_files_and_domain_tag_drive_the_protocol(tmp_path):
    from segprompt.io import write_image, write_mask
    from segprompt.showortell.runner import dataset_domain, prepare_dataset

    root = tmp_path / "food"
    for i in range(4):
        mask = np.zeros((8, 10), np.uint8)
        mask[: 2 + i, :5] = 1  # "pizza"
        mask[6:, 6:] = 2  # "plate"
        mask[0, 9] = 255
        write_image(root / "images" / f"img{i}.png", np.full((8, 10, 3), 40 * i, np.uint8))
        write_mask(root / "masks" / f"img{i}.png", mask)
    (root / "classes.txt").write_text("background\npizza\nplate\n")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("img0\nimg1\nimg2\n")
    (root / "splits" / "val.txt").write_text("img3\nghost\n")
    (root / "domain.txt").write_text("food\n")

    dataset = open_dataset(root)
    assert dataset.layout == "folder" and dataset.split_names == ("train", "val")
    assert any("unknown sample 'ghost'" in str(p) for p in dataset.problems)
    data = prepare_dataset(dataset, domain=dataset_domain(dataset, root))
    assert data.domain == "food"
    assert data.train.ids == ["img0", "img1", "img2"] and data.test.ids == ["img3"]
    assert data.space.names == ("pizza", "plate") and data.space.background == "ignore"
    labels, ignore = semantic_target(data.test[0], data.space)
    assert labels[0, 0] == 1 and labels[7, 9] == 2 and ignore[0, 9] and ignore.sum() == 1
