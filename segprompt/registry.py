"""One registry type for every pluggable kind of thing: backends, point strategies, tuning methods, dataset layouts.

A :class:`Registry` maps names to classes (anything with a ``name``
attribute). Entries register themselves with the :meth:`Registry.register`
class decorator in their own module; the registry knows the *modules* that
hold its built-in entries and imports them on first use, so adding an entry
is one new module plus one line in that list. Modules can be listed per
entry name (``{"sam": "segprompt.backends.sam"}``: only the asked-for module
is imported, so a missing optional dependency breaks only its own entry) or as
a plain sequence (all imported at once, registration order kept).

A second registration under a name already taken raises
:class:`RegistryError`: two entries never silently shadow each other.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

from .errors import SegpromptError

T = TypeVar("T")
C = TypeVar("C")


class RegistryError(SegpromptError):
    """A duplicate registration, or an entry without a name."""


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Args:
        kind: what the entries are, for messages (``"backend"``, ``"strategy"``).
        modules: the modules holding the built-in entries: ``name -> module``
            (imported lazily, one per asked-for name) or a sequence (all
            imported before the first look-up).
        error: the exception type raised for an unknown name (a
            :class:`~segprompt.errors.SegpromptError` subclass, so the CLI
            prints it as one line).
    """

    def __init__(
        self,
        kind: str,
        modules: Mapping[str, str] | Sequence[str] = (),
        error: type[Exception] = SegpromptError,
    ) -> None:
        self.kind = kind
        self.error = error
        self._lazy: dict[str, str] = dict(modules) if isinstance(modules, Mapping) else {}
        self._eager: tuple[str, ...] = () if isinstance(modules, Mapping) else tuple(modules)
        self._entries: dict[str, T] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def register(self, entry: C) -> C:
        """Class decorator: add ``entry`` under ``entry.name``.

        Raises:
            RegistryError: ``entry`` has no ``name``, or the name is taken by another entry.
        """
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} {entry!r} has no name to register under")
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None and existing is not entry:
                raise RegistryError(
                    f"{self.kind} name {name!r} is already registered by {_qualname(existing)}; "
                    f"{_qualname(entry)} needs another name"
                )
            self._entries[name] = entry  # type: ignore[assignment]
        return entry

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        with self._lock:
            for module in self._eager:
                importlib.import_module(module)
            self._loaded = True

    def names(self) -> list[str]:
        """Every known name.

        With a module sequence: in the order of the modules, then registration
        order within a module (whatever order they happened to be imported
        in), then entries of unlisted modules. With a ``name -> module``
        mapping: registered entries, then listed names not imported yet.
        """
        self._load_builtins()
        position = {module: index for index, module in enumerate(self._eager)}
        registered = sorted(
            self._entries,
            key=lambda name: position.get(getattr(self._entries[name], "__module__", ""), len(position)),
        )  # sorted() is stable: registration order within a module
        return registered + sorted(set(self._lazy) - set(self._entries))

    def get(self, name: str) -> T:
        """The entry registered as ``name``, importing its module on first use.

        Raises:
            ``error``: unknown name, or the entry's module needs a package that is not installed.
        """
        self._load_builtins()
        if name not in self._entries and name in self._lazy:
            try:
                importlib.import_module(self._lazy[name])
            except ImportError as exc:
                raise self.error(f"{self.kind} {name!r} needs a package that is not installed: {exc}") from exc
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def create(self, name: str, *args: Any, **options: Any) -> Any:
        """``get(name)(*args, **options)``."""
        factory: Callable[..., Any] = self.get(name)  # type: ignore[assignment]
        return factory(*args, **options)

    def loaded(self) -> dict[str, T]:
        """The entries imported so far, by name in :meth:`names` order (listed modules always included)."""
        return {name: self._entries[name] for name in self.names() if name in self._entries}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _qualname(entry: object) -> str:
    module = getattr(entry, "__module__", "?")
    return f"{module}.{getattr(entry, '__qualname__', repr(entry))}"


__all__ = ["Registry", "RegistryError"]
