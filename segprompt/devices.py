"""Which torch device a model runs on, and what to tell a user whose accelerator ran out of memory.

Every backend, the command line (``--device``) and the napari widgets take a
device *name*; :func:`resolve_device` is the one place that turns it into a
``torch.device``:

* ``"auto"`` (the default everywhere): the first CUDA GPU, else Apple's MPS,
  else the CPU;
* ``"cpu"``, ``"cuda"`` (the current CUDA device), ``"cuda:N"``, ``"mps"``:
  checked against this machine, so ``--device cuda:7`` on a one-GPU machine or
  ``--device cuda`` without CUDA is a one-line :class:`~segprompt.errors.DeviceError`
  naming the value and the devices there are, never a torch traceback later.

A CUDA out-of-memory error is recognised by its type
(``torch.cuda.OutOfMemoryError``), never by its text, and becomes a
:class:`~segprompt.errors.DeviceMemoryError` that says what to lower
(:func:`device_memory_error`, :func:`translate_out_of_memory`); the command
line, the napari workers and the benchmarks do this where user work runs.
:func:`free_memory` and :func:`auto_chunk_size` size batches from the memory
a CUDA device has free.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import torch

from .errors import DeviceError, DeviceMemoryError

#: The device name that picks CUDA, then MPS, then the CPU.
AUTO = "auto"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device names this machine accepts, ``"auto"`` first: e.g. ``["auto", "cpu", "cuda:0", "mps"]``."""
    names = [AUTO, "cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def auto_device() -> torch.device:
    """The current CUDA device where there is one, else MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cuda_absent_reason() -> str:
    return "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"


def resolve_device(device: str | torch.device | None = AUTO) -> torch.device:
    """The ``torch.device`` a device name stands for, checked against this machine.

    Args:
        device: ``"auto"`` (or ``None``), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            ``"mps"``, or a ``torch.device``.

    Returns:
        A device with its index where it has one (``"cuda"`` -> ``cuda:0``
        on a machine whose current CUDA device is 0), so equal devices compare
        and print equal.

    Raises:
        DeviceError: not a device name, a device type segprompt does not run
            on, or a device this machine does not have; the message names the
            value and the available devices.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == AUTO):
        return auto_device()
    available = ", ".join(available_devices())
    try:
        parsed = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device {device!r} is not a device name; available: {available}") from None
    if parsed.type == "cpu":
        return torch.device("cpu")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(device)!r}: {_cuda_absent_reason()}; available: {available}")
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if parsed.index is None else parsed.index
        if index >= count:
            raise DeviceError(
                f"device {str(device)!r}: this machine has {count} CUDA device{'s' * (count != 1)} "
                f"(cuda:0 to cuda:{count - 1}); available: {available}"
            )
        return torch.device("cuda", index)
    if parsed.type == "mps":
        if not _mps_available():
            raise DeviceError(f"device {str(device)!r}: Apple's MPS is not available here; available: {available}")
        return torch.device("mps")
    raise DeviceError(f"device {str(device)!r}: segprompt runs on cpu, cuda or mps; available: {available}")


# -- accelerator memory --------------------------------------------------------------------------------


def free_memory(device: torch.device) -> int | None:
    """Bytes free on a CUDA ``device`` (``torch.cuda.mem_get_info``), or ``None`` on other devices."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def auto_chunk_size(device: torch.device, bytes_per_item: int, *, default: int, limit: int, share: float = 0.5) -> int:
    """How many items of ``bytes_per_item`` to process at once on ``device``.

    On CUDA: as many as fit in ``share`` of the memory free now, between 1 and
    ``limit``. Elsewhere ``default`` (the CPU's caches, not its memory, bound
    the best batch size there).
    """
    free = free_memory(device)
    if free is None:
        return default
    return max(1, min(limit, int(free * share) // max(1, bytes_per_item)))


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's accelerator out-of-memory error (``torch.cuda.OutOfMemoryError``), by type.

    Does not import torch: an error raised before torch was imported is not one.
    """
    loaded = sys.modules.get("torch")
    return loaded is not None and isinstance(exc, loaded.cuda.OutOfMemoryError)


def device_memory_error(exc: BaseException, advice: str, cpu_choice: str = "--device cpu") -> DeviceMemoryError:
    """The one-line error for an out-of-memory ``exc``: what torch could not allocate, and ``advice``.

    ``advice`` names what to lower, e.g. ``"lower --chunk-size or use --precision bf16"``;
    running on the CPU (``cpu_choice``: how the user picks it) is always offered last.
    """
    sentences = [part.strip() for part in " ".join(str(exc).split()).split(". ") if part.strip()]
    detail = ". ".join(sentences[:2]).rstrip(".") or "an allocation failed"  # torch: what it tried to allocate
    return DeviceMemoryError(f"the GPU ran out of memory ({detail}): {advice}, or run on the CPU ({cpu_choice})")


@contextlib.contextmanager
def translate_out_of_memory(advice: str, cpu_choice: str = "--device cpu") -> Iterator[None]:
    """Turn a CUDA out-of-memory error raised inside into :func:`device_memory_error` (``advice``: what to lower)."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise device_memory_error(exc, advice, cpu_choice) from None


__all__ = [
    "AUTO",
    "auto_chunk_size",
    "auto_device",
    "available_devices",
    "device_memory_error",
    "free_memory",
    "is_out_of_memory",
    "resolve_device",
    "translate_out_of_memory",
]
