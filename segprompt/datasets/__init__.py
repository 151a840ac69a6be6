"""Datasets: one reader per folder layout, all returning lazy :class:`Dataset` objects.

``open_dataset(path)`` detects the layout; see :mod:`segprompt.datasets.registry`
for the registry and :mod:`segprompt.datasets.lazy` for error handling and
splits.
"""

from .base import Dataset, MaskKind, ObjectMask, Problem, Sample
from .human_prompts import read_prompts_json, write_prompts_json
from .lazy import BadFileError, DatasetWarning, Entry, LazyDataset, OnError
from .registry import Layout, detect_layout, layouts, open_dataset, register_layout

__all__ = [
    "BadFileError",
    "Dataset",
    "DatasetWarning",
    "Entry",
    "Layout",
    "LazyDataset",
    "MaskKind",
    "ObjectMask",
    "OnError",
    "Problem",
    "Sample",
    "detect_layout",
    "layouts",
    "open_dataset",
    "read_prompts_json",
    "register_layout",
    "write_prompts_json",
]
