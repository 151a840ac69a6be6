"""Registry of prompt-tuning methods.

Each method is a :class:`~segprompt.tuning.methods.base.PromptMethod` subclass
in its own module, registered with :func:`register`. Adding a method means
adding a module and one line to ``_BUILTIN_MODULES``.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from ...errors import SegpromptError
from .base import BaseDims, PromptMethod, PromptSet

_BUILTIN_MODULES: tuple[str, ...] = (
    "segprompt.tuning.methods.coop",
    "segprompt.tuning.methods.cocoop",
    "segprompt.tuning.methods.vpt",
    "segprompt.tuning.methods.maple",
    "segprompt.tuning.methods.shared_attention",
    "segprompt.tuning.methods.shared_separate",
)

_REGISTRY: dict[str, type[PromptMethod]] = {}
M = TypeVar("M", bound=type[PromptMethod])


def register(cls: M) -> M:
    """Class decorator adding a :class:`PromptMethod` under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """Names of all registered methods, in registration order."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return list(_REGISTRY)


def get_method_class(name: str) -> type[PromptMethod]:
    names = method_names()
    if name not in _REGISTRY:
        raise SegpromptError(f"unknown tuning method {name!r}; known: {', '.join(names)}")
    return _REGISTRY[name]


def create_method(name: str, dims: BaseDims, **hyperparameters: Any) -> PromptMethod:
    """Build method ``name`` for a model of ``dims`` with its keyword hyper-parameters.

    Raises:
        SegpromptError: unknown method, or a hyper-parameter it does not take or rejects.
    """
    cls = get_method_class(name)
    try:
        return cls(dims, **hyperparameters)
    except (TypeError, ValueError) as exc:
        raise SegpromptError(f"tuning method {name!r}: {exc}") from exc


__all__ = ["BaseDims", "PromptMethod", "PromptSet", "create_method", "get_method_class", "method_names", "register"]
