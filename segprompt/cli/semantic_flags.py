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
the backend must accept every kind given (``composed`` combines a text /
reference backend with SAM, see :mod:`segprompt.compose`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..backends.base import ProgressCallback, Segmenter
from ..errors import PromptError
from ..io import atomic_write_text, overlay, read_image, read_mask, write_image, write_mask
from ..prompts import Text, VisualReference
from ..semantic import SemanticSegmentation, segment_classes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the text / reference / classes flags to the ``segment`` parser."""
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


def write_semantic(
    image_path: Path,
    classes: dict[str, Text | VisualReference],
    segmenter: Segmenter,
    labels_path: Path,
    overlay_path: Path | None,
    progress: ProgressCallback,
) -> SemanticSegmentation:
    """Run semantic mode on one image and write the label map, its class names and an overlay.

    Writes ``labels_path`` (label image), ``labels_path`` with suffix
    ``.classes.json`` (``{"0": "background", "1": name_0, ...}``) and, when
    given, ``overlay_path``; all atomically.
    """
    image = read_image(image_path)
    result = segment_classes(image, classes, segmenter, progress=progress)
    write_mask(labels_path, result.labels)
    names = {str(label): name for label, name in enumerate(result.class_names)}
    atomic_write_text(labels_path.with_suffix(".classes.json"), json.dumps(names, indent=2) + "\n")
    if overlay_path is not None:
        write_image(overlay_path, overlay(image, result.labels))
    return result


__all__ = ["add_arguments", "classes_from_args", "prompt_parts", "reference_from_files", "write_semantic"]
