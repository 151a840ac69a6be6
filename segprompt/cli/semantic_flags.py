"""``segment``'s flags for text, visual-reference and multi-class (semantic) prompts.

* ``--text PHRASE``: a text prompt.
* ``--reference IMAGE --reference-mask MASK``: a visual reference (the target
  shown in another image); the mask file's non-zero pixels are the target.
* ``--classes a,b,c``: semantic mode. Each class is prompted separately and
  the answers are merged into one label map (:mod:`segprompt.semantic`;
  label 0 = background, class ``i`` = ``i + 1`` in the order given). A
  class's prompt is its name as text, unless ``--class-text NAME PHRASE``
  gives another phrase or ``--class-reference NAME IMAGE MASK`` a visual
  reference (both repeatable). Three separate values rather than one
  ``NAME=IMAGE:MASK`` string, so paths holding ``=``, ``:`` or ``,`` work.

Text and a reference may accompany points, a box or a mask in one prompt;
the backend must accept every kind given. ``--backend composed`` answers any
mix: ``--proposer`` (default ``clipseg``) answers the text / reference and
``--refiner`` (default ``sam``, ``none`` for none) the points / box / mask;
``--exemplar-proposer`` (``owlv2-sam``, ``persam``, ``seggpt``; model folder
``--exemplar-model-dir``) turns a reference into exemplar boxes for a proposer
taking exemplars (``sam3``), see :mod:`segprompt.compose`. The SAM 3 routes
``sam3-refine`` (text + points) and ``sam3-reference`` (a reference from
another image) are those compositions by name (:mod:`segprompt.sam3_routes`):
``--model-dir`` is the SAM 3 folder, ``--exemplar-proposer`` /
``--exemplar-model-dir`` pick ``sam3-reference``'s exemplar proposer.

Model flags of these backends: ``--model-dir`` is the local model folder of a
transformers backend (``clipseg``, ``owlv2-sam``, ``grounding-dino-sam``,
``seggpt``, ``sam2``, ``sam-hq``, ``edgetam``, ``sam3-tracker``, ``sam3``;
default: the hub cache, see :mod:`segprompt.hub`); ``--variant`` picks the
released size of ``sam2`` / ``sam-hq`` without a folder;
``--model-type`` / ``--checkpoint`` pick the SAM inside ``persam``,
``persam-f``, the detector + SAM backends and the ``sam`` refiner, which the
proposer shares.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from typing import Any

import numpy as np

from ..backends import backend_options, create
from ..backends.base import Segmenter
from ..progress import ProgressCallback
from ..compose import ComposedSegmenter
from ..errors import PromptError, SegpromptError
from ..atomic import write_files
from ..io import image_bytes, mask_bytes, overlay, read_image, read_mask
from ..prompts import Text, VisualReference
from ..semantic import SemanticSegmentation, segment_classes


#: The transformers SAM family and SAM 3: a model folder and, for some, a released size (``--variant``).
SAM_FAMILY = ("sam2", "sam-hq", "edgetam", "sam3-tracker", "sam3")
#: The SAM 3 compositions (:mod:`segprompt.sam3_routes`): the SAM 3 folder, SAM 3's threshold.
SAM3_ROUTES = ("sam3-refine", "sam3-reference")
_VARIANTS = ("sam2", "sam-hq")
#: Backends :func:`make_segmenter` builds (they take the model flags of this module).
BACKENDS = ("clipseg", "owlv2-sam", "grounding-dino-sam", "seggpt", "persam", "persam-f", "composed", *SAM_FAMILY,
            *SAM3_ROUTES)  # fmt: skip
_SAM_INSIDE = {"persam": "sam", "persam-f": "sam", "owlv2-sam": "sam", "grounding-dino-sam": "sam"}
_MODEL_DIR = ("clipseg", "owlv2-sam", "grounding-dino-sam", "seggpt", *SAM_FAMILY, *SAM3_ROUTES)
#: Backends that can turn a reference into exemplar boxes (``--exemplar-proposer``).
EXEMPLAR_PROPOSERS = ("owlv2-sam", "persam", "seggpt")
#: The flags forbidding a combination with ``--classes``.
_SINGLE_PROMPT_FLAGS = ("point", "box", "mask_prompt", "exemplar", "prompt_file", "text", "reference", "reference_mask")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the text / reference / classes flags and their backends' model flags to the ``segment`` parser."""
    group = parser.add_argument_group("text, visual-reference and multi-class prompts")
    group.add_argument("--text", metavar="PHRASE", help="a text prompt naming what to segment")
    group.add_argument("--reference", metavar="IMAGE", type=Path, help="reference image showing the target")
    group.add_argument(
        "--reference-mask", metavar="MASK", type=Path, help="mask of the target in --reference (non-zero = target)"
    )
    group.add_argument(
        "--classes",
        metavar="A,B,C",
        help="semantic mode: comma-separated class names, each prompted separately and merged into a label map "
        "(0 = background, class i = i + 1)",
    )
    group.add_argument(
        "--class-text",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "PHRASE"),
        help="with --classes: prompt class NAME with PHRASE instead of its name (repeatable)",
    )
    group.add_argument(
        "--class-reference",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "IMAGE", "MASK"),
        help="with --classes: prompt class NAME with a visual reference instead of text (repeatable)",
    )
    group.add_argument(
        "--model-dir", type=Path, metavar="DIR", help=f"local model folder of {', '.join(_MODEL_DIR)} (or the proposer)"
    )
    group.add_argument(
        "--variant",
        metavar="SIZE",
        help="released size of sam2 (tiny, small, base-plus, large; default large) or sam-hq (vit_b, vit_l, vit_h; "
        "default vit_b), used without --model-dir",
    )
    group.add_argument(
        "--min-score", type=float, metavar="T", help="sam3: minimum instance score, detection x presence (default 0.5)"
    )
    group.add_argument("--proposer", default="clipseg", help="composed: the text/reference backend (default clipseg)")
    group.add_argument("--refiner", default="sam", help="composed: the points/box/mask backend, or none (default sam)")
    group.add_argument(
        "--exemplar-proposer", choices=EXEMPLAR_PROPOSERS, metavar="NAME",
        help="composed (with --proposer sam3) and sam3-reference: the backend finding a --reference's object on the "
        f"image as exemplar boxes for SAM 3: {', '.join(EXEMPLAR_PROPOSERS)} (sam3-reference default owlv2-sam)",
    )  # fmt: skip
    group.add_argument(
        "--exemplar-model-dir", type=Path, metavar="DIR", help="model folder of the exemplar proposer (owlv2-sam, seggpt)"
    )


def reference_from_files(image: Path, mask: Path, flag: str = "--reference") -> VisualReference:
    """A :class:`VisualReference` from an image file and a mask file (non-zero pixels = target)."""
    try:
        return VisualReference(read_image(image), read_mask(mask))
    except PromptError as exc:
        raise PromptError(f"{flag} {image} with mask {mask}: {exc}") from exc


def prompt_parts(args: argparse.Namespace) -> dict[str, Text | VisualReference]:
    """The ``text`` and ``reference`` parts of a :class:`~segprompt.prompts.Prompt` given on the command line."""
    parts: dict[str, Text | VisualReference] = {}
    if args.text is not None:
        try:
            parts["text"] = Text(args.text)
        except PromptError as exc:
            raise PromptError(f"--text: {exc}") from exc
    if (args.reference is None) != (args.reference_mask is None):
        raise PromptError("--reference and --reference-mask must be given together")
    if args.reference is not None:
        parts["reference"] = reference_from_files(args.reference, args.reference_mask)
    return parts


def classes_from_args(args: argparse.Namespace) -> dict[str, Text | VisualReference] | None:
    """The semantic-mode classes in label order, or ``None`` without ``--classes``."""
    if args.classes is None:
        if args.class_text or args.class_reference:
            raise PromptError("--class-text and --class-reference need --classes")
        return None
    names = [name.strip() for name in args.classes.split(",")]
    if any(not name for name in names):
        raise PromptError(f"--classes: empty class name in {args.classes!r}")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PromptError(f"--classes: class {duplicates[0]!r} is given twice")
    classes: dict[str, Text | VisualReference] = {name: Text(name) for name in names}
    for name, phrase in args.class_text:
        _check_known(name, classes, "--class-text")
        classes[name] = Text(phrase)
    for name, image, mask in args.class_reference:
        _check_known(name, classes, "--class-reference")
        classes[name] = reference_from_files(Path(image), Path(mask), f"--class-reference {name}")
    return classes


def _check_known(name: str, classes: dict[str, Text | VisualReference], flag: str) -> None:
    if name not in classes:
        raise PromptError(f"{flag}: class {name!r} is not in --classes ({', '.join(classes)})")


def _device_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``device`` (every backend here takes one) and ``precision`` where backend ``name`` has it."""
    options: dict[str, Any] = {"device": args.device}
    if "precision" in backend_options(name):
        options["precision"] = args.precision
    return options


def _options(name: str, args: argparse.Namespace, sam: Segmenter | None) -> tuple[dict[str, Any], set[str]]:
    """Constructor options of backend ``name`` from the flags, and the flags they use."""
    if name == "sam":
        return {"model_type": args.model_type, "checkpoint": args.checkpoint, **_device_options(name, args)}, {"checkpoint"}
    options: dict[str, Any] = _device_options(name, args)
    used: set[str] = set()
    if name in _MODEL_DIR:
        options["model_dir"] = args.model_dir
        used.add("model_dir")
    if name in _VARIANTS:
        options["variant"] = args.variant
        used.add("variant")
    if name in ("sam3", *SAM3_ROUTES) and args.min_score is not None:
        options["threshold"] = args.min_score
        used.add("min_score")
    if name == "sam3-reference":
        options.update(exemplar_options(args))
        if args.exemplar_proposer is not None:
            options["exemplar_proposer"] = args.exemplar_proposer
        used |= {"exemplar_proposer", "exemplar_model_dir"} | ({"checkpoint"} if "model_type" in options else set())
    if name in _SAM_INSIDE:
        if sam is not None:
            options["sam"] = sam
            options.pop("precision", None)  # the shared SAM has its own
        elif name.startswith("persam"):
            options.update(model_type=args.model_type, checkpoint=args.checkpoint)
        else:
            checkpoint = None if args.checkpoint is None else str(args.checkpoint)
            options.update(sam_model_type=args.model_type, sam_checkpoint=checkpoint)
        used.add("checkpoint")
    return options, used


def exemplar_options(args: argparse.Namespace) -> dict[str, Any]:
    """Constructor options of the exemplar proposer: its folder (``--exemplar-model-dir``); PerSAM's SAM flags.

    A detector (``owlv2-sam``) gets no SAM flags: it proposes exemplars with
    its detector alone, and the composition hands it the refiner as SAM stage.
    """
    options: dict[str, Any] = {}
    name = args.exemplar_proposer or "owlv2-sam"
    if args.exemplar_model_dir is not None and name in _MODEL_DIR:
        key = "model_dir" if args.backend == "composed" else "exemplar_model_dir"
        options[key] = args.exemplar_model_dir
    if name.startswith("persam"):
        options.update(model_type=args.model_type, checkpoint=args.checkpoint)
    return options


def make_segmenter(args: argparse.Namespace) -> Segmenter:
    """The backend ``--backend`` (one of :data:`BACKENDS`) with its model flags.

    Raises:
        SegpromptError: a model flag the backend does not use, or an unknown backend.
    """
    if args.backend == "composed":
        names = [args.proposer] + ([] if args.refiner == "none" else [args.refiner])
    else:
        names = [args.backend]
    used = set().union(*(_options(name, args, None)[1] for name in names))
    if args.backend == "composed" and args.exemplar_proposer is not None:
        names.append(args.exemplar_proposer)
        used |= {"exemplar_proposer", "exemplar_model_dir"} | ({"checkpoint"} if args.exemplar_proposer.startswith("persam") else set())
    for flag in ("model_dir", "checkpoint", "variant", "min_score", "exemplar_proposer", "exemplar_model_dir"):
        if getattr(args, flag) is not None and flag not in used:
            raise SegpromptError(f"--{flag.replace('_', '-')} is not used by the {' / '.join(map(repr, names))} backend")
    if args.precision != "fp32" and not any("precision" in backend_options(name) for name in names):
        raise SegpromptError(f"--precision {args.precision}: the {' / '.join(map(repr, names))} backend runs in float32 only")
    if args.backend != "composed":
        return create(args.backend, **_options(args.backend, args, None)[0])
    refiner = None if args.refiner == "none" else create(args.refiner, **_options(args.refiner, args, None)[0])
    shared_sam = refiner if args.refiner == "sam" else None
    proposer = create(args.proposer, **_options(args.proposer, args, shared_sam)[0])
    if args.exemplar_proposer is None:
        return ComposedSegmenter(proposer, refiner)
    options = exemplar_options(args)
    if shared_sam is not None and args.exemplar_proposer.startswith("persam"):
        options = {"sam": shared_sam}
    return ComposedSegmenter(proposer, refiner, exemplar_proposer=args.exemplar_proposer, exemplar_options=options)


def run_classes(
    args: argparse.Namespace,
    image: np.ndarray,
    classes: dict[str, Text | VisualReference],
    segmenter: Segmenter,
    progress: ProgressCallback,
) -> SemanticSegmentation:
    """Semantic mode: segment ``classes`` in ``image`` and write ``--out`` (labels) and ``--overlay``.

    Also writes ``--out`` with suffix ``.classes.json``
    (``{"0": "background", "1": name_0, ...}``). All files atomically.

    Raises:
        PromptError: ``--classes`` combined with a single-object prompt flag.
    """
    given = [flag for flag in _SINGLE_PROMPT_FLAGS if getattr(args, flag, None)]
    if given:
        flags = ", ".join("--" + flag.replace("_", "-") for flag in given)
        raise PromptError(f"--classes cannot be combined with {flags}; use --class-text / --class-reference")
    result = segment_classes(image, classes, segmenter, progress=progress)
    write_labels(args.out, args.overlay, image, result)
    return result


def class_names_path(labels_path: Path) -> Path:
    """Where :func:`write_labels` puts the label -> class name table of ``labels_path``."""
    return Path(labels_path).with_suffix(".classes.json")


def write_labels(labels_path: Path, overlay_path: Path | None, image: np.ndarray, result: SemanticSegmentation) -> None:
    """Write a label map, its ``.classes.json`` (label -> class name) and optionally an overlay: all or none."""
    names = {str(label): name for label, name in enumerate(result.class_names)}
    files = {
        labels_path: mask_bytes(labels_path, result.labels),
        class_names_path(labels_path): (json.dumps(names, indent=2) + "\n").encode("utf-8"),
    }
    if overlay_path is not None:
        files[overlay_path] = image_bytes(overlay_path, overlay(image, result.labels))
    write_files(files)


__all__ = [
    "BACKENDS",
    "add_arguments",
    "class_names_path",
    "classes_from_args",
    "make_segmenter",
    "prompt_parts",
    "reference_from_files",
    "run_classes",
    "write_labels",
]
