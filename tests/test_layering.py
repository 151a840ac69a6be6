"""Dependencies point inward: no module imports a layer above its own (read from the source, not by importing).

Every module of ``segprompt`` belongs to one layer of :data:`LAYERS`; a
module may import modules of its own layer and the layers below it, and
nothing of ``napari_plugin`` or ``benchmarks`` (they sit outside the package,
above everything). A new module must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segprompt"
OUTSIDE = ("napari_plugin", "benchmarks", "tests")

#: Inner to outer. An entry names a module or a package (every module below it).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("errors", "atomic", "progress", "registry", "paths", "metrics", "geometry", "devices", "precision")),
    ("data model", ("io", "prompts", "tiling", "text_tokenizer", "export", "session_file", "volume.reader", "volume.writer", "volume.synthetic")),
    ("models and data", ("hub", "checkpoints", "datasets")),
    ("segmentation", ("backends", "instances", "cache", "compose", "sam3_routes", "semantic", "annotation_objects", "annotation", "everything", "annotation_outputs", "replay", "volume")),
    ("evaluation and workflows", ("evaluation", "baselines", "runstore", "protocols", "distributed", "pointprompt", "showortell", "tuning", "testing")),
    ("front ends", ("cli", "__main__")),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int | None:
    """Index in :data:`LAYERS` of a ``segprompt...`` module (the package's ``__init__`` re-exports: layer 1)."""
    if module == "segprompt":
        return 1
    inner = module.split(".", 1)[1]
    for index, (_, members) in enumerate(LAYERS):
        if any(inner == member or inner.startswith(member + ".") for member in members):
            return index
    return None


def _imports(module: str, source: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in ``source``, at any depth (function-level imports included)."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import x`` may name a submodule: count it as importing that submodule
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
            found.append((node.lineno, target))
    return found


def _resolve(name: str) -> str:
    """The longest prefix of a dotted ``segprompt`` name that is a module or package in the tree."""
    parts = name.split(".")
    while parts:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return name


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [_module_name(path) for path in MODULES if _layer(_module_name(path)) is None]
    assert not missing, f"give these modules a layer in tests/test_layering.py LAYERS: {missing}"


@pytest.mark.parametrize("path", MODULES, ids=lambda path: _module_name(path))
def test_imports_point_inward(path):
    module = _module_name(path)
    own = _layer(module)
    if own is None:
        pytest.skip("no layer (reported by test_every_module_has_a_layer)")
    outward = []
    for line, name in _imports(module, path.read_text(encoding="utf-8"), path.name == "__init__.py"):
        top = name.split(".")[0]
        if top in OUTSIDE:
            outward.append(f"line {line}: {name} (outside the package)")
        elif top == "segprompt":
            target = _resolve(name)
            layer = _layer(target)
            if layer is not None and layer > own:
                outward.append(f"line {line}: {target} (layer {LAYERS[layer][0]!r})")
    assert not outward, f"{module} (layer {LAYERS[own][0]!r}) imports outward: " + "; ".join(dict.fromkeys(outward))


def test_the_check_catches_an_outward_import():
    """The walk sees function-level and relative imports (a check that finds nothing proves nothing)."""
    source = "def run():\n    from ..cli.progress import tqdm_progress\n    import napari_plugin\n"
    found = _imports("segprompt.backends.probe", source)
    assert (2, "segprompt.cli.progress.tqdm_progress") in found and (3, "napari_plugin") in found
    assert _resolve("segprompt.cli.progress.tqdm_progress") == "segprompt.cli.progress"
    assert _layer("segprompt.cli.progress") > _layer("segprompt.backends.probe")
