"""Registry of prompt-tuning methods.

Each method is a :class:`~segprompt.tuning.methods.base.PromptMethod` subclass
in its own module, registered with :func:`register`. Adding a method means
adding a module and one line to :data:`METHODS`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ...errors import SegpromptError
from ...registry import Registry
from .base import BaseDims, PromptMethod, PromptSet

#: Every prompt-tuning method, in registration order.
METHODS: Registry[type[PromptMethod]] = Registry(
    "tuning method",
    (
        "segprompt.tuning.methods.coop",
        "segprompt.tuning.methods.cocoop",
        "segprompt.tuning.methods.vpt",
        "segprompt.tuning.methods.maple",
        "segprompt.tuning.methods.shared_attention",
        "segprompt.tuning.methods.shared_separate",
    ),
)
M = TypeVar("M", bound=type[PromptMethod])


def register(cls: M) -> M:
    """Class decorator adding a :class:`PromptMethod` under ``cls.name`` (a taken name raises)."""
    return METHODS.register(cls)


def method_names() -> list[str]:
    """Names of all registered methods, in registration order."""
    return METHODS.names()


def get_method_class(name: str) -> type[PromptMethod]:
    return METHODS.get(name)


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


__all__ = ["METHODS", "BaseDims", "PromptMethod", "PromptSet", "create_method", "get_method_class", "method_names", "register"]
