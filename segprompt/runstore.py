"""One durable run folder for every benchmark: its settings, its rows, the data it read.

A run folder holds::

    run.json        {"format", "benchmark", "identity", "options"}: written atomically when the run starts
    <rows file>     results.csv / per_image.jsonl: one line per row, appended one unit per write + fsync
    inputs.jsonl    one line per dataset file read: size, mtime, inode and SHA-256 of its content

**Identity.** ``identity`` holds every setting that changes a row (dataset
name, backend and model, strategies, seeds...). A run resumes only with the
same identity; otherwise :class:`RunStore` refuses with one line naming each
setting that changed. Adding a setting to a benchmark's identity is one entry
in the dict it passes. ``options`` (data folder, worker count, image limit)
may change between invocations and are rewritten each time; with identity
they are everything a worker process needs to rebuild the run
(:class:`WorkerJob` ships the exact text of ``run.json``).

**Rows.** A unit (the rows one piece of work yields together, e.g. every
timestep of one strategy on one object) is written with a single ``write``,
then ``fsync``; a failed write is cut back off, so the log never holds half a
unit. On opening, a torn last line (the process died inside the write) and an
incomplete last unit are cut off by truncating the file in place, which keeps
every complete line whatever happens during the repair. Any other bad line is
a :class:`DamagedRunFileError` naming the file and line. Whole-file rewrites
(``run.json``, rows put in dataset order) go through :mod:`segprompt.atomic`
(temporary file, fsync, rename, fsync of the folder). With
``move_damaged=True`` the run's files are renamed ``<name>.damaged-<time>`` and
a fresh run starts, so nothing is lost.

**Inputs.** Every dataset file a row depends on is recorded (relative to its
dataset root) before that row is written; the digest is computed when the
file is first read, and re-hashed only when its size, mtime or inode change.
When a run is opened, every recorded file is checked: a file whose content
differs (an edited mask, a same-named dataset folder elsewhere) is refused by
name, so old and new data never mix in one run.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import itertools
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

from .atomic import atomic_write_bytes, atomic_write_text, fsync_dir, write_all
from .errors import SegpromptError, storage_errors

RUN_FILE = "run.json"
INPUTS_FILE = "inputs.jsonl"
FORMAT = 1
Row = dict[str, Any]


class RunStoreError(SegpromptError, ValueError):
    """A run folder that cannot be resumed with these settings or this data."""


class DamagedRunFileError(RunStoreError):
    """A file of a run folder holds a line this version cannot read (``path``, ``line``)."""

    def __init__(self, path: Path, line: int | None, reason: str) -> None:
        self.path = Path(path)
        self.line = line
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(
            f"{where}: {reason}; rerun with --move-damaged to rename it to {self.path.name}.damaged-<time> "
            "and start this run afresh"
        )


class RunStoreWarning(UserWarning):
    """Damaged run files were moved aside (``move_damaged=True``)."""


# --- durable file primitives ------------------------------------------------------------------


def append_durably(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` (created when absent) with one write and an fsync.

    A failed write is truncated back off, so the file ends as it was.

    Raises:
        StorageError: the write failed (``"no space left on device: PATH"``...).
    """
    created = not path.exists()
    with storage_errors(path):
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            start = os.fstat(handle).st_size
            try:
                write_all(handle, data)
                os.fsync(handle)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(handle, start)
                    os.fsync(handle)
                raise
        finally:
            os.close(handle)
        if created:
            fsync_dir(path.parent)


def truncate_durably(path: Path, length: int) -> None:
    """Cut ``path`` to its first ``length`` bytes in place (nothing before ``length`` is ever rewritten)."""
    with storage_errors(path), open(path, "r+b") as handle:
        handle.truncate(length)
        handle.flush()
        os.fsync(handle.fileno())


def _complete_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """``(line number, start offset, bytes without the newline)`` of every newline-terminated line."""
    offset = 0
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise RunStoreError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return  # a torn last line: the process died inside its write
            yield number, offset, line[:-1]
            offset += len(line)


# --- row formats ------------------------------------------------------------------------------


class RowFormat(Protocol):
    """How rows of one log are written as lines and read back.

    ``unit_key`` names the fields that identify a unit (the rows written
    together); empty for a log whose lines stand alone and may repeat.
    """

    header: str | None
    unit_key: tuple[str, ...]

    def encode(self, row: Mapping[str, Any]) -> str:
        """One line, without its newline."""

    def decode(self, line: str) -> Row:
        """The row of a line; ``ValueError`` (the reason) for a line that is not one."""

    def unit_size(self, row: Row) -> int:
        """How many rows the unit of ``row`` has."""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value).replace("\r", " ").replace("\n", " ")  # one row per line


@dataclass(frozen=True)
class CsvRows:
    """CSV rows under a header; cells are text, int or float (an empty cell is NaN).

    Attributes:
        columns: the header, in order.
        unit_key: columns identifying a unit.
        text_columns / int_columns: read as ``str`` / ``int``; the rest as ``float``.
        size_column: the column holding each unit's row count (``None``: one row per unit).
    """

    columns: tuple[str, ...]
    unit_key: tuple[str, ...]
    text_columns: frozenset[str]
    int_columns: frozenset[str] = frozenset()
    size_column: str | None = None

    @property
    def header(self) -> str:
        return ",".join(self.columns)

    def encode(self, row: Mapping[str, Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow([_cell(row.get(column, "")) for column in self.columns])
        return buffer.getvalue()

    def decode(self, line: str) -> Row:
        cells = next(csv.reader([line]), [])
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} fields where the header has {len(self.columns)}")
        row: Row = {}
        for column, value in zip(self.columns, cells):
            if column in self.text_columns:
                row[column] = value
                continue
            try:
                row[column] = int(value) if column in self.int_columns else float(value) if value != "" else math.nan
            except ValueError:
                raise ValueError(f"column {column!r} holds {value[:40]!r}, not a number") from None
        return row

    def unit_size(self, row: Row) -> int:
        return 1 if self.size_column is None else int(row[self.size_column])


@dataclass(frozen=True)
class JsonRows:
    """JSON objects, one per line, each its own unit.

    Attributes:
        unit_key: fields identifying a row (empty: lines may repeat).
        required: fields every row must have (``unit_key`` included).
        check: raises ``ValueError`` naming what is wrong with a row's values.
    """

    unit_key: tuple[str, ...]
    required: tuple[str, ...] = ()
    check: Callable[[Row], None] | None = None
    header: None = None

    def encode(self, row: Mapping[str, Any]) -> str:
        return json.dumps(row, allow_nan=False)

    def decode(self, line: str) -> Row:
        row = json.loads(line)
        if not isinstance(row, dict):
            raise ValueError(f"a JSON {type(row).__name__}, not an object")
        missing = [name for name in (*self.unit_key, *self.required) if name not in row]
        if missing:
            raise ValueError(f"no field {missing[0]!r}")
        if self.check is not None:
            self.check(row)
        return row

    def unit_size(self, row: Row) -> int:
        return 1


def _lines(path: Path, fmt: RowFormat) -> Iterator[tuple[int, int, bytes, Row | None]]:
    """``(line number, start offset, bytes, row)`` of every complete line (``row`` is ``None`` for the header).

    Raises:
        DamagedRunFileError: a line that is not a row, or another header.
    """
    header = None if fmt.header is None else fmt.header.encode("utf-8")
    for number, start, raw in _complete_lines(path):
        if number == 1 and header is not None:
            if raw != header:
                raise DamagedRunFileError(path, 1, "its columns differ from this version's results format")
            yield number, start, raw, None
            continue
        try:
            row = fmt.decode(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise DamagedRunFileError(path, number, f"not a row ({exc})") from None
        yield number, start, raw, row


def read_rows(path: str | os.PathLike, fmt: RowFormat) -> Iterator[Row]:
    """The rows of a log in ``fmt``, in file order, without repairing it (a torn last line is skipped).

    Raises:
        DamagedRunFileError: naming the first line that is not a row.
    """
    for _, _, _, row in _lines(Path(path), fmt):
        if row is not None:
            yield row


# --- the row log ------------------------------------------------------------------------------


class RowLog:
    """An append-only file of rows in ``fmt``; see the module docstring for the guarantees.

    Attributes:
        path: the file.
        done: unit keys already written (empty when ``fmt.unit_key`` is).
    """

    def __init__(self, path: str | os.PathLike, fmt: RowFormat) -> None:
        self.path = Path(path)
        self.format = fmt
        self.done: set[tuple[Any, ...]] = set()
        if not self.path.exists() or self.path.stat().st_size == 0:
            if fmt.header is not None:
                append_durably(self.path, (fmt.header + "\n").encode("utf-8"))
            return
        self._recover()

    def unit_of(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] for name in self.format.unit_key)

    def _recover(self) -> None:
        """Cut a torn last line and an incomplete last unit off in place; fill ``done``."""
        size = self.path.stat().st_size
        end = 0
        unit: tuple[Any, ...] | None = None
        unit_start = unit_line = count = expected = 0
        for number, start, raw, row in _lines(self.path, self.format):
            end = start + len(raw) + 1
            if row is None or not self.format.unit_key:
                continue
            key = self.unit_of(row)
            if key != unit:
                if unit is not None and count != expected:
                    raise DamagedRunFileError(self.path, unit_line, f"unit {unit} has {count} of its {expected} rows")
                if key in self.done:
                    raise DamagedRunFileError(self.path, number, f"unit {key} appears a second time")
                unit, unit_start, unit_line, count, expected = key, start, number, 0, self.format.unit_size(row)
                self.done.add(key)
            count += 1
            if count > expected:
                raise DamagedRunFileError(self.path, number, f"unit {unit} has more than its {expected} rows")
        if unit is not None and count < expected:  # the last unit's write was torn
            self.done.discard(unit)
            end = unit_start
        if end < size:
            truncate_durably(self.path, end)
        if end == 0 and self.format.header is not None:
            append_durably(self.path, (self.format.header + "\n").encode("utf-8"))

    def rows(self) -> Iterator[Row]:
        """Every row, in file order (read from disk, never held)."""
        return read_rows(self.path, self.format) if self.path.exists() else iter(())

    def append(self, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Write the rows of one unit durably (one write, fsync); ``False`` when the unit is already written."""
        if not rows:
            return False
        key = self.unit_of(rows[0]) if self.format.unit_key else None
        if key is not None and key in self.done:
            return False
        append_durably(self.path, "".join(self.format.encode(row) + "\n" for row in rows).encode("utf-8"))
        if key is not None:
            self.done.add(key)
        return True

    def append_units(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write rows that arrive unit after unit (consecutive rows with one key form a unit)."""
        for _, unit in itertools.groupby(rows, key=self.unit_of):
            self.append(list(unit))

    def reorder(self, sort_key: Callable[[Row], Any]) -> None:
        """Rewrite the file atomically with its rows stably sorted by ``sort_key`` (lines kept verbatim)."""
        head: list[bytes] = []
        body: list[tuple[Any, bytes]] = []
        for _, _, raw, row in _lines(self.path, self.format):
            if row is None:
                head.append(raw)
            else:
                body.append((sort_key(row), raw))
        ordered = sorted(body, key=lambda item: item[0])
        if [raw for _, raw in ordered] != [raw for _, raw in body]:
            atomic_write_bytes(self.path, b"".join(line + b"\n" for line in head + [raw for _, raw in ordered]))


# --- the data a run read ----------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    """One dataset file as a run read it.

    Attributes:
        dataset: the dataset's name.
        path: relative to the dataset root (absolute when outside it).
        size, mtime_ns, inode: ``os.stat`` values when hashed.
        sha256: hex digest of the content; ``None`` when the file was absent.
    """

    dataset: str
    path: str
    size: int = 0
    mtime_ns: int = 0
    inode: int = 0
    sha256: str | None = None

    def same_stat(self, stat: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.inode) == (stat.st_size, stat.st_mtime_ns, stat.st_ino)


class DatasetFiles(Protocol):
    """What the run store needs of a dataset (:class:`~segprompt.datasets.lazy.LazyDataset` has it)."""

    name: str
    root: Path | None

    def files(self, index: int) -> tuple[Path, ...]: ...

    def shared_files(self) -> tuple[Path, ...]: ...


def _key_path(path: Path, root: Path | None) -> str:
    absolute = Path(os.path.abspath(path))
    if root is not None:
        with contextlib.suppress(ValueError):
            return absolute.relative_to(os.path.abspath(root)).as_posix()
    return absolute.as_posix()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_state(dataset: str, root: Path | None, path: Path, known: FileState | None = None) -> FileState:
    """The state of ``path`` now; the content is hashed unless ``known`` has the same size, mtime and inode."""
    key = _key_path(path, root)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return FileState(dataset, key)
    if known is not None and known.sha256 is not None and known.same_stat(stat):
        return known
    try:
        digest = _sha256(path)
    except OSError as exc:
        raise RunStoreError(f"{path}: cannot read the dataset file ({exc.strerror or exc})") from None
    return FileState(dataset, key, stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)


class FileDigests:
    """File states of the datasets a process reads, each file hashed once per change (a worker keeps one)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], FileState] = {}

    def states(self, dataset: DatasetFiles, paths: Iterable[Path]) -> list[FileState]:
        out = []
        for path in paths:
            key = (dataset.name, _key_path(path, dataset.root))
            state = file_state(dataset.name, dataset.root, path, self._known.get(key))
            self._known[key] = state
            out.append(state)
        return out


_INPUT_ROWS = JsonRows(unit_key=(), required=("dataset", "path", "size", "mtime_ns", "inode", "sha256"))


class InputLog:
    """``inputs.jsonl``: the state of every dataset file the run's rows depend on (the last line per file wins)."""

    def __init__(self, path: Path, datasets: Sequence[DatasetFiles]) -> None:
        self.log = RowLog(path, _INPUT_ROWS)
        self.datasets = {dataset.name: dataset for dataset in datasets}
        self.recorded: dict[tuple[str, str], FileState] = {}
        for row in self.log.rows():
            try:
                state = FileState(**row)
            except TypeError as exc:
                raise DamagedRunFileError(path, None, f"a record is not a file state ({exc})") from None
            self.recorded[(state.dataset, state.path)] = state

    def _dataset(self, state: FileState) -> DatasetFiles:
        dataset = self.datasets.get(state.dataset)
        if dataset is None:
            raise RunStoreError(f"{self.log.path}: records files of dataset {state.dataset!r}, which this run does not read")
        return dataset

    def verify(self) -> None:
        """Check every recorded file against the disk (hashing only files whose stat changed)."""
        states = []
        for state in list(self.recorded.values()):
            dataset = self._dataset(state)
            path = Path(state.path)
            full = path if path.is_absolute() or dataset.root is None else dataset.root / path
            states.append(file_state(state.dataset, dataset.root, full, state))
        self.check(states)

    def note(self, dataset: DatasetFiles, paths: Iterable[Path]) -> None:
        """Record the files of ``dataset`` just read (before rows that depend on them are written)."""
        states = []
        for path in paths:
            known = self.recorded.get((dataset.name, _key_path(path, dataset.root)))
            states.append(file_state(dataset.name, dataset.root, path, known))
        self.check(states)

    def check(self, states: Iterable[FileState]) -> None:
        """Record new states; refuse a file whose content differs from what the run read before.

        Raises:
            RunStoreError: naming the file that changed.
        """
        fresh = []
        for state in states:
            old = self.recorded.get((state.dataset, state.path))
            if old is not None and old.sha256 != state.sha256:
                what = "was removed" if state.sha256 is None else "appeared" if old.sha256 is None else "has other content"
                raise RunStoreError(
                    f"{self.log.path.parent}: dataset {state.dataset!r} file {state.path} {what} since this run read it; "
                    "its rows would mix old and new data, so use another --out (or restore the file)"
                )
            if old != state:
                fresh.append(state)
                self.recorded[(state.dataset, state.path)] = state
        if fresh:
            self.log.append([asdict(state) for state in fresh])


# --- the run folder ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples -> lists), so settings compare as recorded."""
    return json.loads(json.dumps(value))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def differences(recorded: Any, current: Any, name: str = "") -> list[str]:
    """``"NAME was X, now Y"`` for each setting (nested names joined with ``.``, list items by ``[i]``) that differs."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in dict.fromkeys([*recorded, *current]):
            label = f"{name}.{key}" if name else str(key)
            if key not in recorded:
                out.append(f"{label} was not recorded, now {_short(current[key])}")
            elif key not in current:
                out.append(f"{label} was {_short(recorded[key])}, now not given")
            else:
                out += differences(recorded[key], current[key], label)
        return out
    if isinstance(recorded, list) and isinstance(current, list) and len(recorded) == len(current) and recorded and all(
        isinstance(item, dict) for item in recorded + current
    ):
        return [d for i, (a, b) in enumerate(zip(recorded, current)) for d in differences(a, b, f"{name}[{i}]")]
    return [] if recorded == current else [f"{name} was {_short(recorded)}, now {_short(current)}"]


def run_options(source: Any | None, max_images: int | None, workers: int) -> dict[str, Any]:
    """The options every benchmark records: its image limit and the source (a dataclass) its workers rebuild from."""
    if workers > 1 and source is None:
        raise ValueError("workers > 1 needs a source to rebuild the run in each worker")
    return {"max_images": max_images, "source": None if source is None else asdict(source)}


def _damaged_name(path: Path, stamp: str) -> Path:
    return path.with_name(f"{path.name}.damaged-{stamp}")


class RunStore:
    """A benchmark's run folder: recorded settings, the row log and the inputs it read.

    Args:
        folder: the run folder (created).
        benchmark: the benchmark's name (a folder holds runs of one benchmark).
        identity: every setting that changes a row (plain JSON values);
            a resumed run must give the same.
        options: settings that may change between invocations but that
            workers need (data folders, backend options, image limit...).
        rows_file, rows: the row log's file name and format.
        datasets: the datasets the rows come from; their shared files
            (``shared_files()``) are checked now, their samples' files as
            :meth:`note_sample` is called.
        move_damaged: rename damaged run files aside and start afresh instead
            of raising :class:`DamagedRunFileError`.

    Attributes:
        settings_json: the text of ``run.json``, what workers rebuild the run from.
        log: the :class:`RowLog`; ``log.done`` holds the finished unit keys.
        moved: ``(damaged file, where it went)`` pairs when files were moved aside.

    Raises:
        RunStoreError: other settings (naming each), a dataset file that
            changed since it was read (naming it), or a damaged file.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        benchmark: str,
        identity: Mapping[str, Any],
        options: Mapping[str, Any],
        rows_file: str,
        rows: RowFormat,
        datasets: Sequence[DatasetFiles],
        move_damaged: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.benchmark = benchmark
        self.identity = _plain(dict(identity))
        self.options = _plain(dict(options))
        self.rows_path = self.folder / rows_file
        self.moved: list[tuple[Path, Path]] = []
        names = [dataset.name for dataset in datasets]
        if len(set(names)) != len(names):
            raise RunStoreError(f"two datasets of this run are named {next(n for n in names if names.count(n) > 1)!r}")
        with storage_errors(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._open(rows, datasets)
        except DamagedRunFileError as exc:
            if not move_damaged:
                raise
            self._move_aside(exc.path)
            self._open(rows, datasets)

    @property
    def run_file(self) -> Path:
        return self.folder / RUN_FILE

    def _open(self, rows: RowFormat, datasets: Sequence[DatasetFiles]) -> None:
        recorded = self._read_run_file()
        if recorded is None:
            inputs = self.folder / INPUTS_FILE
            for path, empty_size in ((self.rows_path, len(rows.header) + 1 if rows.header else 0), (inputs, 0)):
                if path.exists() and path.stat().st_size > empty_size:
                    raise DamagedRunFileError(path, None, f"no {RUN_FILE} records the settings it was written with")
        if recorded is not None:
            if recorded["benchmark"] != self.benchmark:
                raise RunStoreError(f"{self.folder} holds a {recorded['benchmark']} run, not {self.benchmark}; use another --out")
            changed = differences(recorded["identity"], self.identity)
            if changed:
                raise RunStoreError(
                    f"{self.folder}: this run was started with other settings ({'; '.join(changed)}); "
                    "resume with the same settings, or use another --out"
                )
        document = {"format": FORMAT, "benchmark": self.benchmark, "identity": self.identity, "options": self.options}
        self.settings_json = json.dumps(document, indent=1)
        if recorded != document:
            atomic_write_text(self.run_file, self.settings_json)
        self.log = RowLog(self.rows_path, rows)
        self.inputs = InputLog(self.folder / INPUTS_FILE, datasets)
        self.inputs.verify()
        for dataset in datasets:
            self.inputs.note(dataset, dataset.shared_files())

    def _read_run_file(self) -> dict[str, Any] | None:
        path = self.run_file
        if not path.exists():
            return None
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise DamagedRunFileError(path, None, f"not UTF-8 text ({exc.reason})") from None
        except json.JSONDecodeError as exc:
            raise DamagedRunFileError(path, exc.lineno, f"not JSON ({exc.msg})") from None
        if not isinstance(document, dict) or "format" not in document:
            raise DamagedRunFileError(path, None, "not the run record of this segprompt version (no 'format')")
        if document["format"] != FORMAT or not isinstance(document.get("identity"), dict) or "benchmark" not in document:
            raise DamagedRunFileError(path, None, f"run record format {document['format']!r}; this version reads {FORMAT}")
        return document

    def _move_aside(self, damaged: Path) -> None:
        """Rename the damaged file, and the files that depend on it, to ``<name>.damaged-<time>``."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        # rows without their settings, or without the record of their inputs, cannot be resumed either
        group = [self.run_file] if damaged == self.run_file else []
        group += [self.rows_path, self.folder / INPUTS_FILE]
        for path in group:
            if path.exists():
                target = _damaged_name(path, stamp)
                with storage_errors(target):
                    os.replace(path, target)
                self.moved.append((path, target))
        fsync_dir(self.folder)
        moved = ", ".join(f"{a.name} -> {b.name}" for a, b in self.moved)
        warnings.warn(f"{self.folder}: moved damaged run files aside ({moved}); starting afresh", RunStoreWarning, stacklevel=3)

    def note_sample(self, dataset: DatasetFiles, index: int) -> None:
        """Record the files of sample ``index`` of ``dataset`` (call before its rows are appended)."""
        self.inputs.note(dataset, dataset.files(index))

    def add(self, result: "ScoredItem") -> None:
        """Record a worker's inputs, then append its rows unit by unit (units already written are skipped)."""
        self.inputs.check(result.inputs)
        self.log.append_units(result.rows)


# --- worker processes -------------------------------------------------------------------------


@dataclass
class ScoredItem:
    """What a worker sends back for one item: its rows, and the states of the dataset files it read."""

    rows: list[Row]
    inputs: list[FileState] = field(default_factory=list)


#: A benchmark's worker builder: the run's recorded settings -> the per-item scoring function.
WorkerBuilder = Callable[[Mapping[str, Any]], Callable[[Any], ScoredItem]]


@dataclass(frozen=True)
class WorkerJob:
    """A sharded run's per-item task: picklable, and rebuilt only from what ``run.json`` records.

    Attributes:
        builder: a module-level function taking the parsed ``run.json``
            (``identity`` and ``options``) and returning ``score(item) ->
            ScoredItem``; it must refuse objects whose identity differs from
            the recorded one (see :func:`check_rebuilt`).
        settings_json: the text of ``run.json`` (:attr:`RunStore.settings_json`).
    """

    builder: WorkerBuilder
    settings_json: str

    def __call__(self, item: Any) -> ScoredItem:
        return _built(self.builder, self.settings_json)(item)


@functools.lru_cache(maxsize=2)
def _built(builder: WorkerBuilder, settings_json: str) -> Callable[[Any], ScoredItem]:
    """Each worker process builds a run's datasets and models once and reuses them for every item."""
    return builder(json.loads(settings_json))


def check_rebuilt(settings: Mapping[str, Any], identity: Mapping[str, Any]) -> None:
    """Refuse a worker whose rebuilt objects have another identity than the one the run recorded."""
    changed = differences(settings["identity"], _plain(dict(identity)))
    if changed:
        raise RunStoreError(f"a worker rebuilt this run with other settings than run.json records ({'; '.join(changed)})")


__all__ = [
    "CsvRows",
    "DamagedRunFileError",
    "FileDigests",
    "FileState",
    "JsonRows",
    "RowFormat",
    "RowLog",
    "RunStore",
    "RunStoreError",
    "RunStoreWarning",
    "ScoredItem",
    "WorkerJob",
    "append_durably",
    "check_rebuilt",
    "read_rows",
    "run_options",
    "truncate_durably",
]
