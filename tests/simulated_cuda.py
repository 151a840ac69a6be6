"""A CUDA device simulated on the CPU, to test device handling where no GPU is.

Putting a model on ``device="meta"`` shows only that nothing computes; a real
second device is what catches a tensor made on the host and handed to a model
on the GPU (``torch.tensor(x)`` without ``device=``, ``torch.from_numpy`` not
moved), ``.numpy()`` on a GPU tensor, or a host/GPU mix in one operation.
:class:`SimulatedCuda` gives every test that second device with real values:

* every tensor computes on the CPU as usual;
* a tensor *lives on* ``cuda:0`` when it was made there (``device="cuda"``,
  ``.to("cuda")``, ``.cuda()``, ``Module.to("cuda")``) or computed from one
  that does; ``.device`` / ``.is_cuda`` say so, and ``.cpu()`` /
  ``.to("cpu")`` copy it back to the host, as on a GPU;
* as on a GPU, an operation mixing a host tensor (other than a 0-d one) with a
  device tensor raises ``Expected all tensors to be on the same device``, and
  ``.numpy()`` / ``np.asarray`` of a device tensor raise, naming the call;
* every host -> device and device -> host copy is recorded
  (:attr:`SimulatedCuda.uploads`, :attr:`SimulatedCuda.downloads`: shapes), so
  a test can say what crosses the bus.

Where a tensor lives is a property of its storage (views share it), tracked by
the storage's address; the tensors on the device are kept alive while the mode
is active, so no address is reused by a host tensor. Use it with
:func:`pretend_cuda_available` (``torch.cuda`` reporting one device), e.g. the
``simulated_cuda`` fixture of ``tests/test_devices.py``.
"""

from __future__ import annotations

import types
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

DEVICE = torch.device("cuda", 0)
_HOST = torch.device("cpu")
#: Calls whose index arguments may stay on the host (as a GPU accepts), only their data must be on the device.
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
#: Calls that take tensors of two devices by design: copies, rebinding a parameter's data (``Module.to``).
_COPIES = {torch.Tensor.copy_, torch.Tensor.data.__set__, torch._has_compatible_shallow_copy_type}


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _is_cuda(device: Any) -> bool:
    if device is None or isinstance(device, torch.Tensor):
        return False
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False


class SimulatedCuda(TorchFunctionMode):
    """The torch function mode of the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._on_device: dict[int, torch.Tensor] = {}
        self.uploads: list[tuple[int, ...]] = []
        self.downloads: list[tuple[int, ...]] = []

    # -- where a tensor lives ----------------------------------------------------------------------

    @staticmethod
    def _address(tensor: torch.Tensor) -> int:
        return tensor.untyped_storage().data_ptr()

    def on_device(self, tensor: torch.Tensor) -> bool:
        return tensor.numel() > 0 and not tensor.is_meta and self._address(tensor) in self._on_device

    def _mark(self, value: Any) -> Any:
        for tensor in _tensors(value):
            if tensor.numel() > 0 and not tensor.is_meta:  # meta tensors (lazy model init) have no storage
                self._on_device[self._address(tensor)] = tensor
        return value

    def _upload(self, tensor: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        if self.on_device(tensor):
            return result
        self.uploads.append(tuple(tensor.shape))
        if result.numel() and self._address(result) == self._address(tensor):
            result = result.clone()  # a copy on the device, never the host tensor itself
        return self._mark(result)

    def _download(self, tensor: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
        if not self.on_device(tensor):
            return result
        self.downloads.append(tuple(tensor.shape))
        if result.numel() and self._address(result) == self._address(tensor):
            result = result.clone()
        return result

    # -- the mode ---------------------------------------------------------------------------------------

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func == torch.Tensor.device.__get__:
            return DEVICE if self.on_device(args[0]) else _HOST
        if func == torch.Tensor.is_cuda.__get__:
            return self.on_device(args[0])
        if func is torch.Tensor.get_device:
            return 0 if self.on_device(args[0]) else -1
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and self.on_device(args[0]):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first.")
        if func is torch.Tensor.cuda:
            return self._upload(args[0], args[0])
        if func is torch.Tensor.cpu:
            return self._download(args[0], func(*args, **kwargs))
        if func is torch.Tensor.to:
            return self._to(func, args, kwargs)
        to_device = _is_cuda(kwargs.get("device"))
        if to_device:
            kwargs["device"] = _HOST
        if func not in _COPIES:
            self._check_same_device(func, args, kwargs)
        result = func(*args, **kwargs)
        inputs = list(_tensors(args[1:] if func in _INDEXING else args)) + list(_tensors(kwargs))
        if func in _INDEXING:
            inputs.insert(0, args[0])
        if to_device or any(self.on_device(tensor) for tensor in inputs):
            if func not in (torch.Tensor.tolist, torch.Tensor.item):
                self._mark(result)
        return result

    def _to(self, func, args, kwargs) -> Any:
        """``Tensor.to`` in any of its forms: a device (or another tensor's) moves, a dtype alone stays."""
        tensor = args[0]
        if tensor.is_meta or any(isinstance(item, (str, torch.device)) and torch.device(item).type == "meta"
                                 for item in (*args[1:], kwargs.get("device"))):
            return func(*args, **kwargs)  # lazy model initialisation: no data moves
        target: Any = kwargs.pop("device", None)
        for item in args[1:]:
            if isinstance(item, torch.Tensor):  # .to(other): other's device and dtype
                target = DEVICE if self.on_device(item) else _HOST
                kwargs.setdefault("dtype", item.dtype)
            elif isinstance(item, torch.dtype):
                kwargs["dtype"] = item
            elif isinstance(item, (str, torch.device)):
                target = item
            elif isinstance(item, bool):
                kwargs["non_blocking"] = item
        if kwargs.get("dtype") is None:
            kwargs.pop("dtype", None)
        result = func(tensor, device=_HOST, **kwargs)
        if target is None:  # a dtype or memory-format change stays where it is
            return self._mark(result) if self.on_device(tensor) else result
        return self._upload(tensor, result) if _is_cuda(target) else self._download(tensor, result)

    def _check_same_device(self, func, args, kwargs) -> None:
        data = [args[0]] if func in _INDEXING and args else list(_tensors(args))
        if func is torch.Tensor.__setitem__ and len(args) > 2:
            data += list(_tensors(args[2]))
        data += list(_tensors(kwargs))
        device = [tensor for tensor in data if self.on_device(tensor)]
        host = [tensor for tensor in data if tensor.dim() > 0 and tensor.numel() > 0 and not tensor.is_meta
                and not self.on_device(tensor)]
        if device and host:
            name = getattr(func, "__qualname__", getattr(func, "__name__", str(func)))
            raise RuntimeError(
                f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu! "
                f"(simulated, in {name}: host tensor of shape {tuple(host[0].shape)})"
            )


def pretend_cuda_available(monkeypatch, free_bytes: int = 8 * 2**30) -> None:
    """``torch.cuda`` reporting one device with ``free_bytes`` free (for :class:`SimulatedCuda`), undone by ``monkeypatch``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_bytes, 2 * free_bytes))
    not_capturing = types.SimpleNamespace(is_capturing=lambda: False)  # optimizers ask before each step
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(torch.accelerator, "current_stream", lambda device=None: not_capturing)
    # the simulated device draws from the CPU's generator: its random ops run there
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.get_rng_state())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": torch.set_rng_state(state))
