"""The one :class:`~segprompt.datasets.base.Dataset` implementation every reader returns.

A reader lists its samples as :class:`Entry` records (cheap: file names only)
and gives a ``load(entry) -> Sample`` function that reads and validates the
files when the sample is accessed. What goes wrong is reported as a
:class:`~segprompt.datasets.base.Problem` naming the file and the reason:

* ``on_error="skip"``: a :class:`DatasetWarning` is issued and the sample is
  left out of iteration; indexing a bad sample raises :class:`BadFileError`
  (it cannot return a sample) after recording the problem;
* ``on_error="raise"``: the first problem raises :class:`BadFileError`, a
  :class:`~segprompt.errors.DatasetError`.

Problems found while listing (a mask without an image, an image without a
mask) are reported when the dataset is built, so ``len`` counts only samples
whose files exist.

:meth:`LazyDataset.files` and :meth:`LazyDataset.shared_files` say which files
a sample is read from, so a benchmark run can record their content
(:mod:`segprompt.runstore`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence

from ..errors import DatasetError, SegpromptError
from ..prompts import Prompt
from .base import Problem, Sample
from .splits import seeded_split

OnError = Literal["skip", "raise"]
ON_ERROR_CHOICES: tuple[OnError, ...] = ("skip", "raise")
#: Suffixes of the dataset-wide files at a dataset's root (prompts.json, classes.txt, index and split lists).
SHARED_SUFFIXES = frozenset({".json", ".txt", ".csv", ".yaml", ".yml"})


class DatasetWarning(UserWarning):
    """A bad file was skipped (``on_error="skip"``)."""


class BadFileError(DatasetError):
    """One file of a dataset is bad; carries the :class:`Problem`."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.problem = Problem(str(path), reason)
        super().__init__(str(self.problem))


@dataclass(frozen=True)
class Entry:
    """One sample before it is read.

    Attributes:
        id: the sample id (unique within the dataset).
        path: the main file (image), named in problem reports.
        group: samples with the same group always land in the same split part
            (e.g. the organ masks of one CT slice); defaults to ``id``.
        info: reader-specific fields (mask path, class name, ...).
    """

    id: str
    path: Path
    group: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def split_group(self) -> str:
        return self.group or self.id


Loader = Callable[[Entry], Sample]


def _paths_in(value: Any) -> Iterator[Path]:
    if isinstance(value, Path):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _paths_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _paths_in(item)


class LazyDataset:
    """A list of entries read on access; see the module docstring for errors.

    Attributes:
        name: dataset name (folder name).
        layout: the layout name it was read with.
        class_names: every class the dataset can contain.
        root: the folder (or COCO JSON) it was opened from, ``None`` when unknown.
    """

    def __init__(
        self,
        name: str,
        layout: str,
        class_names: Sequence[str],
        entries: Iterable[Entry],
        load: Loader,
        *,
        on_error: OnError = "skip",
        problems: Iterable[Problem] = (),
        splits: Mapping[str, Sequence[str]] | None = None,
        prompts: Mapping[str, Mapping[str, list[Prompt]]] | None = None,
        root: Path | None = None,
        _shared_problems: list[Problem] | None = None,
    ) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise DatasetError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        self.name = name
        self.layout = layout
        self.class_names = tuple(class_names)
        self.on_error: OnError = on_error
        self.root = None if root is None else Path(root)
        self._entries = list(entries)
        self._load = load
        self._splits = {key: tuple(value) for key, value in (splits or {}).items()}
        self._prompts = {key: dict(value) for key, value in (prompts or {}).items()}
        # Splits share the parent's list, so a problem met through a split shows on the whole dataset.
        self._problems: list[Problem] = [] if _shared_problems is None else _shared_problems
        ids = [entry.id for entry in self._entries]
        if len(set(ids)) != len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise DatasetError(f"{name}: duplicate sample id {duplicate!r}")
        for problem in problems:
            self._report(problem)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} layout={self.layout!r} samples={len(self)} problems={len(self._problems)}>"

    @property
    def ids(self) -> list[str]:
        return [entry.id for entry in self._entries]

    @property
    def entries(self) -> list[Entry]:
        return list(self._entries)

    @property
    def problems(self) -> list[Problem]:
        return list(self._problems)

    @property
    def split_names(self) -> tuple[str, ...]:
        """Split names from the layout's own split files (empty when it has none)."""
        return tuple(self._splits)

    def files(self, index: int) -> tuple[Path, ...]:
        """The files sample ``index`` is read from: every path of its entry (image, mask, annotation JSON,
        prompt files...) that is not a folder; a path may name a file that does not exist (yet)."""
        entry = self._entries[index]
        return tuple(p for p in dict.fromkeys(_paths_in([entry.path, entry.info])) if not p.is_dir())

    def shared_files(self) -> tuple[Path, ...]:
        """The dataset-wide files every sample may depend on: the metadata files at :attr:`root`
        (``prompts.json``, ``classes.txt``, index files...) and ``splits/*.txt``; the JSON itself when
        the dataset was opened from one. Empty when :attr:`root` is unknown."""
        if self.root is None:
            return ()
        if self.root.is_file():
            folder, own = self.root.parent, [self.root]
        else:
            folder, own = self.root, []
        found = [
            p for p in sorted(folder.iterdir())
            if p.suffix.lower() in SHARED_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ] if folder.is_dir() else []
        splits = sorted((folder / "splits").glob("*.txt")) if (folder / "splits").is_dir() else []
        return tuple(dict.fromkeys([*own, *found, *splits]))

    def located(self, root: str | Path) -> "LazyDataset":
        """The same dataset, recorded as opened from ``root``."""
        derived = self._derived(self._entries, splits=self._splits)
        derived.root = Path(root)
        return derived

    def __getitem__(self, index: int) -> Sample:
        """Read sample ``index``.

        Raises:
            BadFileError: a file of this sample is bad (recorded in ``problems``).
        """
        entry = self._entries[index]
        try:
            sample = self._load(entry)
        except BadFileError as exc:
            self._report(exc.problem)
            raise
        except SegpromptError as exc:
            problem = Problem(str(entry.path), str(exc))
            self._report(problem)
            raise BadFileError(problem.path, problem.reason) from exc
        extra = self._prompts.get(sample.id)
        if extra:
            sample.prompts = {**sample.prompts, **extra}
        return sample

    def __iter__(self) -> Iterator[Sample]:
        for index in range(len(self)):
            try:
                yield self[index]
            except BadFileError:
                if self.on_error == "raise":
                    raise

    def get(self, sample_id: str) -> Sample:
        """The sample with id ``sample_id``."""
        for index, entry in enumerate(self._entries):
            if entry.id == sample_id:
                return self[index]
        raise DatasetError(f"{self.name}: no sample with id {sample_id!r}")

    def subset(self, ids: Iterable[str]) -> "LazyDataset":
        """A dataset of the samples whose id is in ``ids``, in this dataset's order."""
        wanted = set(ids)
        unknown = wanted - set(self.ids)
        if unknown:
            raise DatasetError(f"{self.name}: unknown sample ids {sorted(unknown)[:5]}")
        return self._derived([entry for entry in self._entries if entry.id in wanted], splits={})

    def split(self, name: str, *, fraction: float = 0.8, seed: int = 0) -> "LazyDataset":
        """One part of the dataset.

        With split files (VOC's ``ImageSets``, ADE20K's ``training``/``validation``),
        ``name`` must be one of :attr:`split_names`. Without them the samples
        are divided deterministically into two parts: ``"train"`` (``fraction``
        of the split groups, after shuffling them with ``seed``) and the held
        out rest, called ``"val"`` or ``"test"`` (the same part: tuning calls it
        validation, a benchmark calls it test). ``"all"`` is the whole dataset.

        Raises:
            DatasetError: an unknown split name or a fraction outside ``(0, 1)``.
        """
        if name == "all":
            return self
        if self._splits:
            if name not in self._splits:
                raise DatasetError(
                    f"{self.name}: no split {name!r}; the layout's split files give: {', '.join(self._splits)}"
                )
            present = set(self.ids)
            return self.subset(i for i in self._splits[name] if i in present)
        groups = [entry.split_group for entry in self._entries]
        chosen = seeded_split(groups, name, fraction=fraction, seed=seed)
        return self._derived([entry for entry, keep in zip(self._entries, chosen) if keep], splits={})

    def with_prompts(self, prompts: Mapping[str, Mapping[str, list[Prompt]]]) -> "LazyDataset":
        """The same dataset with extra human prompts ``{sample_id: {set: [Prompt per timestep]}}``."""
        unknown = sorted(set(prompts) - set(self.ids))
        merged = {**self._prompts}
        for sample_id, sets in prompts.items():
            merged[sample_id] = {**merged.get(sample_id, {}), **sets}
        derived = self._derived(self._entries, splits=self._splits, prompts=merged)
        for sample_id in unknown[:20]:
            derived._report(Problem(sample_id, "prompts.json names a sample that is not in the dataset"))
        return derived

    def _derived(
        self,
        entries: list[Entry],
        *,
        splits: Mapping[str, Sequence[str]],
        prompts: Mapping[str, Mapping[str, list[Prompt]]] | None = None,
    ) -> "LazyDataset":
        return LazyDataset(
            self.name,
            self.layout,
            self.class_names,
            entries,
            self._load,
            on_error=self.on_error,
            splits=splits,
            prompts=self._prompts if prompts is None else prompts,
            root=self.root,
            _shared_problems=self._problems,
        )

    def _report(self, problem: Problem) -> None:
        if problem in self._problems:
            return
        self._problems.append(problem)
        if self.on_error == "raise":
            raise BadFileError(problem.path, problem.reason)
        warnings.warn(f"{self.name}: skipped {problem}", DatasetWarning, stacklevel=3)


__all__ = [
    "BadFileError",
    "DatasetWarning",
    "Entry",
    "LazyDataset",
    "Loader",
    "ON_ERROR_CHOICES",
    "OnError",
]
