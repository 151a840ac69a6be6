"""Show-or-Tell's released split lists (``data/splits/<name>_{train,val}.pkl`` of FocoosAI/ShowOrTell).

Each file is a pickled pair ``(per-class lists, image list)``: the image list
names the split's images, and ``per_class[k]`` the images of the split where
class index ``k`` occurs, in the order the reference draws its visual
references from. The names are the reference's: VOC ``"2007_000032"`` (and
``"2007_000032.png"`` in the per-class lists), ADE20K
``"training/ADE_train_00000001"``, Cityscapes
``"aachen/aachen_000000_000019_leftImg8bit.png"``, general folders
``"train/<name>"``; :func:`read_released_splits` maps them to the sample ids of
segprompt's reader of the dataset.

The files are read with an unpickler that builds only lists, dicts, strings,
numbers and numpy scalars (what the released files hold), so a tampered file
cannot run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import DatasetError
from .base import Dataset

#: The reference's benchmark name of a dataset read with each layout (general folders: by folder name).
RELEASED_NAMES: Mapping[str, str] = {"voc": "pascalvoc", "ade20k": "ade", "cityscapes": "cityscapes"}
_ALLOWED_GLOBALS = frozenset({
    ("builtins", "list"), ("collections", "defaultdict"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
})  # fmt: skip


class _ListsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to build {module}.{name}")
        return super().find_class(module, name)


@dataclass(frozen=True)
class ReleasedSplits:
    """One dataset's released train / val lists, as sample ids of segprompt's reader.

    Attributes:
        train, val: sample ids of each split, in the file's order.
        candidates: class index -> training sample ids showing the class, in the file's order.
        files: the two pickle files read.
    """

    train: tuple[str, ...]
    val: tuple[str, ...]
    candidates: Mapping[int, tuple[str, ...]]
    files: tuple[Path, Path]


def released_name(dataset: Dataset) -> str:
    """The reference's name of ``dataset``: by layout, else its folder name lower-cased without ``-``."""
    return RELEASED_NAMES.get(dataset.layout, dataset.name.lower().replace("-", "").replace("_", ""))


def sample_id(layout: str, name: str) -> str:
    """The segprompt sample id of a name in a released list of a dataset read with ``layout``."""
    if layout == "voc":
        return name.removesuffix(".png")
    if layout == "ade20k":
        return name.rsplit("/", 1)[-1]
    if layout == "cityscapes":
        return name.rsplit("/", 1)[-1].removesuffix(".png").removesuffix("_leftImg8bit")
    return name


def _load(path: Path) -> tuple[Mapping[Any, Any], list[str]]:
    try:
        with path.open("rb") as handle:
            data = _ListsUnpickler(handle).load()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such split file (the reference's data/splits/ folder holds them)") from None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: unreadable split file ({type(exc).__name__}: {exc})") from exc
    if not (isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], dict) and isinstance(data[1], list)):
        raise DatasetError(f"{path}: expected a pickled (per-class lists, image list) pair")
    return data


def read_released_splits(folder: str | Path, dataset: Dataset, name: str | None = None) -> ReleasedSplits:
    """``<folder>/<name>_train.pkl`` and ``<name>_val.pkl`` for ``dataset`` (``name``: :func:`released_name`).

    Raises:
        DatasetError: a missing or unreadable file, or a listed image the dataset does not have.
    """
    name = name or released_name(dataset)
    paths = (Path(folder) / f"{name}_train.pkl", Path(folder) / f"{name}_val.pkl")
    (per_class, train), (_, val) = _load(paths[0]), _load(paths[1])
    known = set(dataset.ids)
    mapped = []
    for path, names in ((paths[0], train), (paths[1], val)):
        ids = tuple(sample_id(dataset.layout, str(n)) for n in names)
        missing = [i for i in ids if i not in known]
        if missing:
            raise DatasetError(
                f"{path}: {len(missing)} listed images are not in {dataset.name!r} (e.g. {missing[0]!r}); "
                "is the whole dataset there?"
            )
        mapped.append(ids)
    candidates = {
        int(index): tuple(i for i in (sample_id(dataset.layout, str(n)) for n in names) if i in known)
        for index, names in per_class.items()
    }
    return ReleasedSplits(mapped[0], mapped[1], candidates, paths)
