"""Backend registry.

Each backend lives in its own module and registers its class with
:func:`register`; :data:`BACKENDS` (a :class:`segprompt.registry.Registry`)
imports a module only when its backend is asked for, so a missing optional
dependency (``transformers``) breaks only that backend. Adding a backend means
adding a module and one line to the :data:`BACKENDS` list; no other backend
changes.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..errors import SegpromptError
from ..registry import Registry
from .base import Embedding, Prediction, Segmenter

#: Every backend, by name; each module registers its class(es) with :func:`register` when imported.
BACKENDS: Registry[type[Segmenter]] = Registry(
    "backend",
    {
        "classical": "segprompt.backends.classical",
        "sam": "segprompt.backends.sam",
        "persam": "segprompt.backends.persam",
        "persam-f": "segprompt.backends.persam",
        "composed": "segprompt.compose",
        "clipseg": "segprompt.backends.clipseg",
        "owlv2-sam": "segprompt.backends.owlv2_sam",
        "grounding-dino-sam": "segprompt.backends.grounding_dino_sam",
        "seggpt": "segprompt.backends.seggpt",
        "sam2": "segprompt.backends.sam2",
        "sam-hq": "segprompt.backends.sam_hq",
        "edgetam": "segprompt.backends.edgetam",
        "sam3-tracker": "segprompt.backends.sam3_tracker",
        "sam3": "segprompt.backends.sam3",
        "sam3-refine": "segprompt.sam3_routes",
        "sam3-reference": "segprompt.sam3_routes",
        "clipseg-tuned": "segprompt.tuning.segmenter",
    },
)

S = TypeVar("S", bound=type[Segmenter])


def register(cls: S) -> S:
    """Class decorator adding a :class:`Segmenter` subclass under ``cls.name`` (a taken name raises)."""
    return BACKENDS.register(cls)


def backend_names() -> list[str]:
    """Names of all known backends (imported or not), sorted."""
    return sorted(BACKENDS.names())


def get_backend_class(name: str) -> type[Segmenter]:
    """The class registered as ``name``, importing its module on first use."""
    return BACKENDS.get(name)


def create(name: str, **options: Any) -> Segmenter:
    """Instantiate backend ``name`` with its keyword options."""
    return get_backend_class(name)(**options)


#: User-facing option -> the constructor parameter names that mean it, in order of preference.
_OPTION_ALIASES: dict[str, tuple[str, ...]] = {
    "model_dir": ("model_dir",),
    "variant": ("variant",),
    "model_type": ("model_type", "sam_model_type"),
    "checkpoint": ("checkpoint", "sam_checkpoint"),
    "device": ("device",),
    "exemplar_proposer": ("exemplar_proposer",),
    "exemplar_model_dir": ("exemplar_model_dir",),
    "precision": ("precision",),
}


#: Options that wrap the backend in a :class:`~segprompt.backends.tiled.TiledSegmenter` instead of configuring it.
TILING_OPTIONS = ("tile_shape", "halo")


def backend_options(name: str) -> list[str]:
    """The generic user options (keys of :func:`create_from_options`) backend ``name`` has a use for.

    :data:`TILING_OPTIONS` serve every backend that takes points, boxes or masks.
    """
    import inspect

    from .tiled import ROUTABLE_KINDS

    cls = get_backend_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    options = [option for option, names in _OPTION_ALIASES.items() if any(p in accepted for p in names)]
    return options + list(TILING_OPTIONS) if cls.accepts & ROUTABLE_KINDS else options


def constructor_options(name: str, **options: Any) -> dict[str, Any]:
    """The generic user options (see :func:`create_from_options`) as keyword arguments of backend ``name``'s constructor.

    Each option goes under the name the constructor uses; ``None`` values and
    options the backend has no use for are dropped.

    Raises:
        SegpromptError: an unknown option or backend.
    """
    import inspect

    accepted = inspect.signature(get_backend_class(name).__init__).parameters
    kwargs: dict[str, Any] = {}
    for option, value in options.items():
        if value is None or option in TILING_OPTIONS:
            continue
        if option not in _OPTION_ALIASES:
            raise SegpromptError(f"unknown backend option {option!r}; known: {', '.join(_OPTION_ALIASES)}")
        target = next((p for p in _OPTION_ALIASES[option] if p in accepted), None)
        if target is not None:
            kwargs[target] = value
    return kwargs


def create_from_options(name: str, **options: Any) -> Segmenter:
    """Instantiate backend ``name`` from the generic user options of the CLI and napari.

    ``options`` may hold ``model_dir`` (transformers backends), ``variant``
    (the released size of ``sam2`` / ``sam-hq``), ``model_type``
    and ``checkpoint`` (SAM, or the SAM stage of a detector backend),
    ``exemplar_proposer`` and ``exemplar_model_dir`` (``sam3-reference``),
    ``device`` (:func:`segprompt.devices.resolve_device`; every model backend's
    default is ``"auto"``) and ``precision`` (:mod:`segprompt.precision`). Each is passed under the name the backend's constructor uses
    (:func:`constructor_options`); ``None`` values and options the backend has
    no use for are dropped, so one command line serves every backend.
    ``tile_shape`` (and ``halo``, px, one value or ``(rows, cols)``) wrap the
    backend in a :class:`~segprompt.backends.tiled.TiledSegmenter`.

    Raises:
        SegpromptError: an unknown option; ``halo`` without ``tile_shape``;
            tiling a backend that takes no points, boxes or masks.
    """
    cls = get_backend_class(name)
    tiling = {option: options[option] for option in TILING_OPTIONS if options.get(option) is not None}
    if tiling and "tile_shape" not in tiling:
        raise SegpromptError("halo: give a tile shape too; the halo is the context around each tile")
    if not tiling:
        return cls(**constructor_options(name, **options))
    from ..tiling import check_tiling
    from .tiled import DEFAULT_HALO, TiledSegmenter

    TiledSegmenter.check_backend(cls)  # both checked before any weights load
    check_tiling(tiling["tile_shape"], tiling.get("halo", DEFAULT_HALO))
    return TiledSegmenter(cls(**constructor_options(name, **options)), **tiling)


__all__ = [
    "BACKENDS",
    "Embedding",
    "Prediction",
    "Segmenter",
    "TILING_OPTIONS",
    "backend_names",
    "backend_options",
    "constructor_options",
    "create",
    "create_from_options",
    "get_backend_class",
    "register",
]
