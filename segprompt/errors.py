"""Exceptions raised for user mistakes.

Every error a user can cause (a bad prompt, an unreadable file, a missing
checkpoint, a prompt kind a backend cannot answer) derives from
:class:`SegpromptError`, so the CLI and the napari plugin can show its message
instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator


class SegpromptError(Exception):
    """Base class of every error caused by user input or the environment."""


class PromptError(SegpromptError, ValueError):
    """A prompt is malformed or does not fit the image it is applied to."""


class ImageError(SegpromptError, OSError):
    """An image or mask file cannot be read, or an array cannot be used as an image."""


class UnsupportedPromptError(SegpromptError, ValueError):
    """A backend was given a prompt kind it does not accept."""


class CheckpointError(SegpromptError, RuntimeError):
    """A model checkpoint is missing, cannot be downloaded, or fails verification."""


class WeightsUnavailableError(CheckpointError):
    """The weights a backend needs are not here: not given, not in their local folder, not downloadable, or not verified.

    The message says where to put a copy; the command line adds the flag of the
    running verb that points at one (:mod:`segprompt.cli.weights`).

    Attributes:
        kind: ``"sam"`` (a SAM checkpoint file) or ``"transformers"`` (a model folder).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # keep ``kind`` across processes (Dask workers)
        return type(self), (str(self), self.kind)


class DatasetError(SegpromptError, ValueError):
    """A dataset folder has an unknown layout or a file in it is bad."""


class DeviceError(SegpromptError, ValueError):
    """A device name that is not a device, or names one this machine does not have (``--device cuda:7``)."""


class DeviceMemoryError(SegpromptError, MemoryError):
    """The accelerator ran out of memory; the message says what to lower (:mod:`segprompt.devices`)."""


class StorageError(SegpromptError, OSError):
    """A file cannot be written or read because of the file system: a full disk, a read-only folder, permissions.

    The message is one line, ``"<reason>: <path>"``, e.g. ``"no space left on
    device: out/mask.png"``. ``errno`` and ``filename`` are those of the
    :class:`OSError` it translates, so callers can still test
    ``exc.errno == errno.ENOSPC``.
    """

    @classmethod
    def from_os_error(cls, exc: OSError, path: str | os.PathLike | None = None) -> "StorageError":
        """Translate ``exc``, naming ``path`` (default: the file the OS named)."""
        if isinstance(exc, StorageError):
            return exc
        name = path if path is not None else exc.filename
        reason = exc.strerror or str(exc) or type(exc).__name__
        reason = reason[:1].lower() + reason[1:]
        error = cls(exc.errno, f"{reason}: {name}" if name is not None else reason)
        error.filename = None if name is None else os.fspath(name)
        return error

    def __str__(self) -> str:
        return str(self.strerror)


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def load_failure(exc: BaseException) -> str:
    """One line saying why a weights file did not load (torch, safetensors, transformers), for a user.

    PyTorch's refusal of a pickled object comes with the advice to load the
    file again with ``weights_only=False``, which runs any code the file
    holds: that advice is never passed on. The object's type is named instead.
    """
    text = _ANSI_ESCAPE.sub("", str(exc))
    unsafe = _UNSAFE_GLOBAL.search(text)
    if unsafe is not None:
        return f"it holds a pickled {unsafe.group(1)} object, and segprompt loads only tensors"
    if "weights_only" in text or "Weights only load failed" in text:
        return "it holds pickled objects other than tensors, and segprompt loads only tensors"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an :class:`OSError` of the body as a :class:`StorageError` naming ``path``.

    A :class:`SegpromptError` passes through unchanged (``ImageError`` is an
    ``OSError`` too, and already names its file). Use it around any write (or
    append, or read) of a user-visible file::

        with storage_errors(log_path):
            os.write(fd, line)
    """
    try:
        yield
    except SegpromptError:
        raise
    except OSError as exc:
        raise StorageError.from_os_error(exc, path) from exc
