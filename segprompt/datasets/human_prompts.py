"""``prompts.json``: recorded human prompts (clicks, strokes, boxes) per timestep.

Schema (version 1)::

    {
      "schema": 1,
      "samples": {
        "<sample id>": {
          "<prompt set>": [<Prompt.to_dict()>, ...]
        }
      }
    }

* ``sample id`` is the dataset's :attr:`Sample.id`;
* ``prompt set`` names one annotator or session (``"st1"``, ``"set1"``, ...);
* the list holds one :class:`~segprompt.prompts.Prompt` per timestep, in the
  order the person gave them; each is the *whole* prompt at that timestep
  (e.g. all clicks so far), not the increment, so timestep ``t`` can be
  replayed alone. Coordinates are ``(x, y)`` = ``(column, row)`` in
  original-image pixels, like every :class:`Prompt`.

A ``prompts.json`` at a dataset root is read by
:func:`~segprompt.datasets.open_dataset` for any layout, and its sets are added
to :attr:`Sample.prompts`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import DatasetError, PromptError
from ..io import atomic_write_text
from ..prompts import Prompt

PROMPTS_FILE = "prompts.json"
SCHEMA_VERSION = 1

HumanPrompts = dict[str, dict[str, list[Prompt]]]


def read_prompts_json(path: str | os.PathLike) -> HumanPrompts:
    """``{sample_id: {set_name: [Prompt per timestep]}}`` from ``path``.

    Raises:
        DatasetError: unreadable JSON, another schema version, or a malformed
            entry (naming the sample, set and timestep).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read prompts JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION or not isinstance(data.get("samples"), dict):
        raise DatasetError(f"{path}: expected {{'schema': {SCHEMA_VERSION}, 'samples': {{...}}}}")
    out: HumanPrompts = {}
    for sample_id, sets in data["samples"].items():
        if not isinstance(sets, dict):
            raise DatasetError(f"{path}: samples[{sample_id!r}] must map prompt-set names to lists")
        out[sample_id] = {}
        for set_name, steps in sets.items():
            if not isinstance(steps, list):
                raise DatasetError(f"{path}: samples[{sample_id!r}][{set_name!r}] must be a list of prompts")
            try:
                out[sample_id][set_name] = [Prompt.from_dict(step) for step in steps]
            except PromptError as exc:
                raise DatasetError(f"{path}: samples[{sample_id!r}][{set_name!r}]: {exc}") from exc
    return out


def write_prompts_json(path: str | os.PathLike, prompts: Mapping[str, Mapping[str, Sequence[Prompt]]]) -> None:
    """Write ``{sample_id: {set_name: [Prompt per timestep]}}`` atomically."""
    samples = {
        sample_id: {set_name: [step.to_dict() for step in steps] for set_name, steps in sets.items()}
        for sample_id, sets in prompts.items()
    }
    atomic_write_text(path, json.dumps({"schema": SCHEMA_VERSION, "samples": samples}, indent=1))
