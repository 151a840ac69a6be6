"""``--device`` and ``--precision``, the same on every verb that runs a model.

``--device`` is ``auto`` (CUDA, then Apple MPS, then the CPU), ``cpu``,
``cuda``, ``cuda:N`` or ``mps``; :func:`check_device` resolves it through
:func:`segprompt.devices.resolve_device` before any file is read or weights
load, so a device this machine lacks is a one-line error naming it and the
devices there are. ``--precision`` is the image encoder's arithmetic
(:mod:`segprompt.precision`).

Each verb also says what to lower when the GPU runs out of memory
(:func:`set_memory_advice`); :func:`segprompt.cli.main` prints that advice
with torch's ``torch.cuda.OutOfMemoryError``, recognised by its type.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import SegpromptError
from ..precision import PRECISIONS

DEVICE_HELP = "where models run: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps"
PRECISION_HELP = (
    "image-encoder arithmetic: fp32, or bf16 / fp16 autocast (several times faster on GPUs; "
    "the masks differ slightly, see the README)"
)
#: ``--device`` values any backend takes: a backend without a model computes on the CPU.
CPU_DEVICES = ("auto", "cpu")
#: What every verb's out-of-memory advice starts from.
DEFAULT_MEMORY_ADVICE = "use --precision bf16 or a smaller image"


def add_device_arguments(
    group: Any, *, default: str | None = "auto", precision_default: str | None = "fp32", precision: bool = True
) -> None:
    """``--device`` and (with ``precision``) ``--precision`` on ``group`` (a parser or an argument group).

    A ``None`` default leaves the choice to the backend (or, for ``replay``,
    to the recorded session); a given value is passed on.
    """
    device_help = DEVICE_HELP if default is not None else f"{DEVICE_HELP} (default: the backend's, auto)"
    group.add_argument("--device", default=default, metavar="DEVICE", help=device_help)
    if not precision:
        return
    precision_help = PRECISION_HELP if precision_default is not None else f"{PRECISION_HELP} (default fp32)"
    group.add_argument("--precision", choices=PRECISIONS, default=precision_default, help=precision_help)


def set_memory_advice(parser: argparse.ArgumentParser, advice: str = DEFAULT_MEMORY_ADVICE) -> None:
    """What the verb tells a user whose GPU ran out of memory: the settings to lower."""
    parser.set_defaults(memory_advice=advice)


def check_device(args: argparse.Namespace) -> None:
    """Resolve ``--device`` now (imports torch), so a bad one fails before any work.

    Raises:
        DeviceError: not a device, or one this machine does not have.
    """
    if getattr(args, "device", None) is None:
        return
    from ..devices import resolve_device

    resolve_device(args.device)


def refuse_unused_device(args: argparse.Namespace, backend: str, uses_device: bool) -> None:
    """Refuse ``--device`` naming an accelerator for a backend that runs no model (``auto`` and ``cpu`` pass).

    Raises:
        SegpromptError: naming the flag and the backend.
    """
    device = getattr(args, "device", None)
    if not uses_device and device is not None and device.strip().lower() not in CPU_DEVICES:
        raise SegpromptError(f"--device {device}: the {backend!r} backend runs no model (it computes on the CPU)")


__all__ = [
    "CPU_DEVICES",
    "DEFAULT_MEMORY_ADVICE",
    "add_device_arguments",
    "check_device",
    "refuse_unused_device",
    "set_memory_advice",
]
