"""Backend registry.

Each backend lives in its own module and registers its class with
:func:`register`; the registry imports a module only when its backend is
asked for, so a missing optional dependency (``transformers``) breaks only
that backend. Adding a backend means adding a module and one line to
``_BUILTIN_MODULES``; no other backend changes.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from ..errors import SegpromptError
from .base import Embedding, Prediction, ProgressCallback, Segmenter, no_progress

_BUILTIN_MODULES: dict[str, str] = {
    "classical": "segprompt.backends.classical",
    "sam": "segprompt.backends.sam",
    "persam": "segprompt.backends.persam",
    "persam-f": "segprompt.backends.persam",
    "composed": "segprompt.compose",
    "clipseg": "segprompt.backends.clipseg",
    "owlv2-sam": "segprompt.backends.owlv2_sam",
    "grounding-dino-sam": "segprompt.backends.grounding_dino_sam",
    "seggpt": "segprompt.backends.seggpt",
    "clipseg-tuned": "segprompt.tuning.segmenter",
}

_REGISTRY: dict[str, type[Segmenter]] = {}

S = TypeVar("S", bound=type[Segmenter])


def register(cls: S) -> S:
    """Class decorator adding a :class:`Segmenter` subclass under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def backend_names() -> list[str]:
    """Names of all known backends (imported or not)."""
    return sorted(set(_BUILTIN_MODULES) | set(_REGISTRY))


def get_backend_class(name: str) -> type[Segmenter]:
    """The class registered as ``name``, importing its module on first use."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        try:
            importlib.import_module(_BUILTIN_MODULES[name])
        except ImportError as exc:
            raise SegpromptError(f"backend {name!r} needs a package that is not installed: {exc}") from exc
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SegpromptError(f"unknown backend {name!r}; known: {', '.join(backend_names())}") from None


def create(name: str, **options: Any) -> Segmenter:
    """Instantiate backend ``name`` with its keyword options."""
    return get_backend_class(name)(**options)


#: User-facing option -> the constructor parameter names that mean it, in order of preference.
_OPTION_ALIASES: dict[str, tuple[str, ...]] = {
    "model_dir": ("model_dir",),
    "model_type": ("model_type", "sam_model_type"),
    "checkpoint": ("checkpoint", "sam_checkpoint"),
    "device": ("device",),
}


def create_from_options(name: str, **options: Any) -> Segmenter:
    """Instantiate backend ``name`` from the generic user options of the CLI and napari.

    ``options`` may hold ``model_dir`` (transformers backends), ``model_type``
    and ``checkpoint`` (SAM, or the SAM stage of a detector backend) and
    ``device``. Each is passed under the name the backend's constructor uses;
    ``None`` values and options the backend has no use for are dropped, so one
    command line serves every backend.
    """
    import inspect

    cls = get_backend_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    for option, value in options.items():
        if value is None:
            continue
        if option not in _OPTION_ALIASES:
            raise SegpromptError(f"unknown backend option {option!r}; known: {', '.join(_OPTION_ALIASES)}")
        target = next((p for p in _OPTION_ALIASES[option] if p in accepted), None)
        if target is not None:
            kwargs[target] = value
    return cls(**kwargs)


__all__ = [
    "Embedding",
    "Prediction",
    "ProgressCallback",
    "Segmenter",
    "backend_names",
    "create",
    "create_from_options",
    "get_backend_class",
    "no_progress",
    "register",
]
