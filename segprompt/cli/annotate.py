"""What the whole-image verbs (``everything``, ``refine``, ``replay``) share: model flags, the output folder.

Model flags are the generic backend options of
:func:`segprompt.backends.create_from_options` (``--model-type``,
``--checkpoint``, ``--model-dir``, ``--variant``, ``--device``,
``--precision``); a flag the chosen backend has no use for is refused
(``--device auto`` or ``cpu`` and ``--precision fp32``, which ask for nothing, pass). The options used are saved in the
session file so ``segprompt replay`` builds the same model. Every verb writes
the folder of :mod:`segprompt.annotation_outputs`, checked before any work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..annotation import AnnotationSession
from ..annotation_outputs import check_outputs, write_outputs
from ..backends import backend_options, create_from_options
from ..backends.base import Embedding, Segmenter
from ..errors import SegpromptError
from ..progress import ProgressCallback
from . import tiling_flags
from .device_flags import CPU_DEVICES, add_device_arguments, check_device
from .segment import CACHED_BACKENDS
from .weights import local_weights_flags

#: Model flag -> backend option.
MODEL_FLAGS = {"model_type": "--model-type", "checkpoint": "--checkpoint", "model_dir": "--model-dir",
               "variant": "--variant", "device": "--device", "precision": "--precision", "tile_shape": "--tile-shape", "halo": "--halo"}
#: Model flag values that ask for nothing, accepted whatever the backend (one without a model computes on the CPU).
_NO_REQUEST = {"device": CPU_DEVICES, "precision": ("fp32",)}


def add_model_arguments(parser: argparse.ArgumentParser, backend_help: str | None = None) -> None:
    """``--backend`` (described by ``backend_help``; no such flag when ``None``) and the model flags."""
    group = parser.add_argument_group("model")
    if backend_help is not None:
        group.add_argument("--backend", default="classical", help=backend_help)
    group.add_argument("--model-type", help="SAM architecture: vit_b, vit_l, vit_h (sam; default vit_b)")
    group.add_argument("--checkpoint", help="SAM weights file (sam; default: the official checkpoint)")
    group.add_argument("--model-dir", help="local model folder of a transformers backend (sam2, sam-hq, sam3, ...)")
    group.add_argument("--variant", help="released size of sam2 / sam-hq without --model-dir")
    add_device_arguments(group, default=None, precision_default=None)
    tiling_flags.add_arguments(group)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR",
        help="output folder: labels.tif, coco.json, objects.csv, overlay.png, labels.session.json",
    )
    parser.add_argument("--ome-zarr", action="store_true", help="also write objects.ome.zarr (NGFF 0.5)")
    parser.add_argument("--plane", type=int, help="plane of a TIFF/.npy stack (default the first)")


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model flags given on the command line, as backend options (paths absolute, tile sizes as lists)."""
    options = {option: getattr(args, option) for option in MODEL_FLAGS if getattr(args, option, None) is not None}
    for option in ("tile_shape", "halo"):
        if option in options:
            options[option] = list(options[option])
    for option in ("checkpoint", "model_dir"):
        if option in options:
            options[option] = str(Path(options[option]).expanduser().resolve())
    return options


def check_options(backend: str, options: Mapping[str, Any]) -> None:
    """Refuse a model flag ``backend`` has no use for, naming it, and a device this machine lacks.

    Raises:
        SegpromptError: the flag and the backend; an unknown backend.
        DeviceError: ``--device`` names no device here.
    """
    if "halo" in options and "tile_shape" not in options:
        raise SegpromptError("--halo needs --tile-shape (the halo is the context around each tile)")
    if options.get("device") is not None:
        check_device(argparse.Namespace(device=options["device"]))
    used = backend_options(backend)
    for option, value in options.items():
        if option not in used and str(value).strip().lower() not in _NO_REQUEST.get(option, ()):
            raise SegpromptError(f"{MODEL_FLAGS[option]} is not used by the {backend!r} backend")


def make_segmenter(backend: str, options: Mapping[str, Any]) -> Segmenter:
    """Build ``backend`` from ``options``; missing weights name the flag to point at a local copy."""
    check_options(backend, options)
    with local_weights_flags(transformers="--model-dir DIR", sam="--checkpoint PATH"):
        return create_from_options(backend, **options)


def embed(segmenter: Segmenter, image: np.ndarray, progress: ProgressCallback) -> Embedding:
    """The embedding of ``image``, from the embedding cache for the SAM family."""
    if segmenter.name in CACHED_BACKENDS:
        from ..cache import EmbeddingCache

        return EmbeddingCache().embed(segmenter, image, progress)
    return segmenter.embed(image, progress)


def new_session(
    segmenter: Segmenter, embedding: Embedding, options: Mapping[str, Any], image: Path, plane: int | None
) -> AnnotationSession:
    """A session that saves how to find the image and rebuild the model."""
    session = AnnotationSession(segmenter, embedding, backend_options=options)
    session.image_path, session.image_plane = str(Path(image).resolve()), plane
    return session


def finish(args: argparse.Namespace, session: AnnotationSession, image: Path, what: str) -> None:
    """Write the output folder and one summary line on stderr."""
    paths = write_outputs(args.out, session, Path(image).name, args.ome_zarr)
    print(f"{args.out}: {what}; wrote {', '.join(path.name for path in paths.values())}", file=sys.stderr)


__all__ = [
    "add_model_arguments",
    "add_output_arguments",
    "check_options",
    "check_outputs",
    "embed",
    "finish",
    "given_options",
    "make_segmenter",
    "new_session",
]
