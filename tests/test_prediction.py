"""``Prediction``: per-candidate fields stay aligned when candidates are selected."""

import numpy as np
import pytest

from segprompt.backends.base import Prediction


def _prediction(methods=("a", "b", "c")):
    masks = np.zeros((3, 4, 5), bool)
    for k in range(3):
        masks[k, k] = True
    logits = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 256, 256), np.float32)
    return Prediction(masks, np.array([0.2, 0.9, 0.5], np.float32), logits, methods)


def test_method_names_the_best_candidate():
    assert _prediction().method == "b"
    assert _prediction(methods=None).method is None


def test_subset_keeps_masks_scores_logits_and_methods_aligned():
    picked = _prediction().subset([2, 0])
    assert picked.methods == ("c", "a")
    np.testing.assert_allclose(picked.scores, [0.5, 0.2])
    assert picked.masks[0, 2].all() and picked.masks[1, 0].all()
    np.testing.assert_array_equal(picked.low_res_logits[:, 0, 0], [2.0, 0.0])
    assert picked.method == "c"


def test_methods_must_name_every_mask():
    with pytest.raises(ValueError, match="methods must name 3 masks"):
        _prediction(methods=("a", "b"))
