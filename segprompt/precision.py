"""The arithmetic precision a model runs at: ``fp32``, or ``bf16`` / ``fp16`` autocast where it pays.

Backends take ``precision`` (``--precision`` on the command line): ``"fp32"``
(the default) runs everything in float32; ``"bf16"`` and ``"fp16"`` run the
image encoder, where nearly all of a model's arithmetic is, under
``torch.autocast`` of that dtype. The autocast is local to the call
(:func:`autocast`), never a process-wide setting, and the encoder's output is
brought back to float32, so decoders, caches and masks keep float32 tensors.
An embedding made at reduced precision differs from the float32 one; backends
therefore add the precision to their model id (:func:`model_id_suffix`), which
keeps the two apart in the embedding cache and in run identities.

bf16 keeps float32's range (8 exponent bits) with 8 significant bits; fp16
keeps 11 significant bits in a narrower range. On GPUs with tensor cores both
are several times faster than float32; on CPUs with AVX512-BF16/AMX bf16 pays,
elsewhere it may not. ``benchmarks/bench_decoder.py --precision bf16`` reports
the time and the masks' agreement with float32.

**Exactness on CUDA.** PyTorch runs cuDNN convolutions in TF32 (10-bit
mantissa) by default on Ampere and newer GPUs; matmuls stay float32 unless
the user asks otherwise. :func:`ieee_float32` is the section in which
segprompt needs float32 to mean IEEE float32 (the batch scoring path, whose
exactness margins are those of float32 rounding).
"""

from __future__ import annotations

import contextlib
import threading
from typing import ContextManager, Iterator

import torch

from .errors import SegpromptError

#: The precisions backends accept.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`.

    Raises:
        SegpromptError: another value, naming it and the choices.
    """
    if precision not in PRECISIONS:
        raise SegpromptError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return precision


def autocast(device: torch.device, precision: str) -> ContextManager[None]:
    """``torch.autocast`` to ``precision`` on ``device``'s type for the block; nothing for ``"fp32"``."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def model_id_suffix(precision: str) -> str:
    """``""`` for fp32, else ``"+bf16"`` / ``"+fp16"``: appended to a model id whose embeddings depend on it."""
    return "" if check_precision(precision) == "fp32" else f"+{precision}"


class _Tf32Off:
    """Counts the threads inside :func:`ieee_float32`; TF32 is off while any is, then as it was before."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.saved: tuple[bool, bool] = (False, False)

    def enter(self) -> None:
        with self.lock:
            if self.inside == 0:
                self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
            self.inside += 1

    def exit(self) -> None:
        with self.lock:
            self.inside -= 1
            if self.inside == 0:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


_TF32_OFF = _Tf32Off()


@contextlib.contextmanager
def ieee_float32(device: torch.device) -> Iterator[None]:
    """On a CUDA ``device``: float32 matmuls and convolutions in IEEE float32 (no TF32) for the block.

    PyTorch has no per-call TF32 switch: ``torch.backends.cuda.matmul.allow_tf32``
    and ``torch.backends.cudnn.allow_tf32`` are process-wide. This context turns
    both off while at least one thread is inside it and restores the values
    found on first entry when the last thread leaves (a lock and a count, so
    overlapping sections of several threads cannot leave them off). Other
    threads of the process computing meanwhile get IEEE float32 too: slower
    convolutions, never less accurate ones. On other devices it does nothing.
    """
    if device.type != "cuda":
        yield
        return
    _TF32_OFF.enter()
    try:
        yield
    finally:
        _TF32_OFF.exit()


__all__ = ["PRECISIONS", "autocast", "check_precision", "ieee_float32", "model_id_suffix"]
