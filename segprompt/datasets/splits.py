"""Deterministic seeded two-part split for layouts without split files.

The distinct split groups (sample ids, or e.g. the CT slice shared by its organ
masks) are sorted, shuffled with ``numpy.random.default_rng(seed)``, and the
first ``round(fraction * n_groups)`` form ``"train"`` (at least one group, and
at least one left out when there are two or more); the rest is the held-out
part, named ``"val"`` or ``"test"``. The result depends only on the set of
groups, the fraction and the seed, never on file order or the machine.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import DatasetError

TRAIN_NAME = "train"
HELD_OUT_NAMES = ("val", "test")


def train_groups(groups: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The groups of the ``"train"`` part."""
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"split fraction must be in (0, 1), got {fraction!r}")
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    count = int(round(fraction * len(unique)))
    count = min(max(count, 1), max(len(unique) - 1, 1))
    return {unique[i] for i in order[:count]}


def seeded_split(groups: Sequence[str], name: str, *, fraction: float = 0.8, seed: int = 0) -> list[bool]:
    """For each sample (given by its group), whether it belongs to split ``name``.

    Raises:
        DatasetError: ``name`` is not ``"train"``, ``"val"`` or ``"test"``.
    """
    if name != TRAIN_NAME and name not in HELD_OUT_NAMES:
        raise DatasetError(
            f"unknown split {name!r}: this dataset has no split files; use 'train', 'val'/'test' (held out) or 'all'"
        )
    train = train_groups(groups, fraction, seed)
    return [(group in train) == (name == TRAIN_NAME) for group in groups]
