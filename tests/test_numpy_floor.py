"""The NumPy floor in pyproject.toml is true: no module uses a NumPy function newer than it.

segprompt declares ``numpy>=1.24``; ``np.bitwise_count`` (NumPy 2.0) once
slipped in and broke every install that resolved NumPy 1.x. This test reads
the floor and every module's ``np.<name>`` / ``numpy.<name>`` uses (and
``np.asarray(copy=...)``, new in 2.0) from the source.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: NumPy functions and modules added after 1.24, with the release that added them.
ADDED_IN: dict[str, tuple[int, int]] = {
    "exceptions": (1, 25),
    "dtypes": (1, 25),
    "bitwise_count": (2, 0),
    "isdtype": (2, 0),
    "matrix_transpose": (2, 0),
    "vecdot": (2, 0),
    "permute_dims": (2, 0),
    "concat": (2, 0),
    "pow": (2, 0),
    "acos": (2, 0),
    "acosh": (2, 0),
    "asin": (2, 0),
    "asinh": (2, 0),
    "atan": (2, 0),
    "atan2": (2, 0),
    "atanh": (2, 0),
    "bitwise_left_shift": (2, 0),
    "bitwise_right_shift": (2, 0),
    "bitwise_invert": (2, 0),
    "trapezoid": (2, 0),
    "strings": (2, 0),
    "unstack": (2, 1),
    "cumulative_sum": (2, 1),
    "cumulative_prod": (2, 1),
    "astype": (2, 1),
    "matvec": (2, 2),
    "vecmat": (2, 2),
}


def _floor() -> tuple[int, int]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (spec,) = [dep for dep in project["dependencies"] if re.match(r"numpy\b", dep)]
    major, minor = re.search(r">=\s*(\d+)\.(\d+)", spec).groups()
    return int(major), int(minor)


def _numpy_uses(path: Path) -> list[tuple[int, str, tuple[int, int]]]:
    """``(line, what, version)`` of every use in ``path`` of NumPy API newer than 1.24."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names if alias.name == "numpy"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            if node.attr in ADDED_IN:
                found.append((node.lineno, f"np.{node.attr}", ADDED_IN[node.attr]))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "asarray"
            and any(keyword.arg == "copy" for keyword in node.keywords)
        ):
            found.append((node.lineno, "np.asarray(copy=...)", (2, 0)))
    return found


def test_no_module_uses_numpy_newer_than_the_declared_floor():
    floor = _floor()
    assert tuple(int(part) for part in np.__version__.split(".")[:2]) >= floor, "the installed NumPy is below the floor"
    newer = [
        f"{path.relative_to(ROOT)}:{line}: {what} needs NumPy {version[0]}.{version[1]}"
        for folder in ("segprompt", "napari_plugin")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, what, version in _numpy_uses(path)
        if version > floor
    ]
    assert not newer, f"pyproject.toml allows NumPy {floor[0]}.{floor[1]}, but:\n" + "\n".join(newer)


def test_the_check_sees_what_it_looks_for(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("import numpy as np\n\ncounts = np.bitwise_count(np.asarray([3], copy=True))\n")
    assert [(line, what) for line, what, _ in _numpy_uses(source)] == [(3, "np.bitwise_count"), (3, "np.asarray(copy=...)")]
