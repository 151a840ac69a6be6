"""``segprompt segment``: one image, one prompt, one mask.

Prompts come from flags (``--point X,Y[,LABEL]`` repeated, ``--box
X0,Y0,X1,Y1``, ``--mask-prompt MASK``, ``--exemplar X0,Y0,X1,Y1[,LABEL]``
repeated) and/or a saved prompt file (``--prompt-file``,
:meth:`segprompt.prompts.Prompt.to_json`); flags replace the file's part of the
same kind. Coordinates are original-image pixels, ``x`` = column, ``y`` = row.
The best-scoring candidate is written as a 0/255 mask, atomically; a concept
backend (``sam3``) writes every instance instead, as a label map (0
background, 1..N best first) with ``<out>.instances.json`` (label, score, box,
class name). ``--overlay`` adds a coloured overlay and ``--save-prompt`` the
prompt actually used, as JSON.

Prompt building lives in :func:`prompt_from_args`, the one place new prompt
flags (text, references, classes) plug into.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..backends import backend_names, backend_options, create, create_from_options
from ..backends.base import Prediction, Segmenter
from ..backends.tiled import TiledSegmenter
from ..errors import PromptError, SegpromptError
from ..atomic import check_writable, write_files
from ..instances import Instances, InstancesPrediction
from ..io import MASK_SUFFIXES, check_output_type, image_bytes, mask_bytes, overlay, read_image, read_mask
from ..prompts import Box, Exemplars, MaskPrompt, Points, Prompt
from . import semantic_flags, tiling_flags
from .device_flags import add_device_arguments, check_device, refuse_unused_device, set_memory_advice
from .progress import tqdm_progress
from .tune import add_tuned_argument, tuned_prompt, tuned_segmenter
from .weights import local_weights_flags


def _numbers(value: str, flag: str, counts: tuple[int, ...]) -> list[float]:
    parts = value.split(",")
    if len(parts) not in counts:
        expected = " or ".join(str(c) for c in counts)
        raise PromptError(f"{flag} {value!r}: expected {expected} comma-separated numbers")
    out = []
    for part in parts:
        try:
            out.append(float(part))
        except ValueError:
            raise PromptError(f"{flag} {value!r}: {part.strip()!r} is not a number") from None
    return out


def parse_point(value: str) -> tuple[float, float, int]:
    """``"X,Y"`` or ``"X,Y,LABEL"`` (LABEL 1 include, default; 0 exclude) -> ``(x, y, label)``."""
    numbers = _numbers(value, "--point", (2, 3))
    label = numbers[2] if len(numbers) == 3 else 1.0
    if label not in (0.0, 1.0):
        raise PromptError(f"--point {value!r}: label must be 1 (include) or 0 (exclude), got {label:g}")
    return numbers[0], numbers[1], int(label)


def parse_box(value: str) -> Box:
    """``"X0,Y0,X1,Y1"`` -> :class:`Box`."""
    return Box(*_numbers(value, "--box", (4,)))


def parse_exemplar(value: str) -> tuple[Box, int]:
    """``"X0,Y0,X1,Y1"`` or ``"X0,Y0,X1,Y1,LABEL"`` (LABEL 1 positive, default; 0 negative) -> ``(box, label)``."""
    numbers = _numbers(value, "--exemplar", (4, 5))
    label = numbers[4] if len(numbers) == 5 else 1.0
    if label not in (0.0, 1.0):
        raise PromptError(f"--exemplar {value!r}: label must be 1 (positive) or 0 (negative), got {label:g}")
    try:
        return Box(*numbers[:4]), int(label)
    except PromptError as exc:
        raise PromptError(f"--exemplar {value!r}: {exc}") from exc


def read_prompt_file(path: Path) -> Prompt:
    """A :class:`Prompt` from a JSON file written by :meth:`Prompt.to_json`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptError(f"{path}: cannot read prompt file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:  # JSON files are UTF-8 (RFC 8259)
        raise PromptError(
            f"{path}: the prompt file is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        return Prompt.from_json(text)
    except PromptError as exc:
        raise PromptError(f"{path}: {exc}") from exc


def prompt_from_args(args: argparse.Namespace) -> Prompt:
    """Build the prompt from ``--prompt-file``, ``--point``, ``--box``, ``--mask-prompt``, ``--text`` and ``--reference``.

    Flags replace the prompt file's part of the same kind.

    Raises:
        PromptError: a malformed value, naming the flag and the value.
    """
    return dataclasses.replace(where_prompt_from_args(args), **semantic_flags.prompt_parts(args))


def where_prompt_from_args(args: argparse.Namespace) -> Prompt:
    """The prompt of the flags :func:`add_prompt_arguments` adds (``--prompt-file``, ``--point``, ``--box``,
    ``--mask-prompt``, ``--exemplar``); flags replace the file's part of the same kind.

    Raises:
        PromptError: a malformed value, naming the flag and the value.
    """
    prompt = read_prompt_file(args.prompt_file) if args.prompt_file else Prompt()
    parts: dict[str, Any] = {}
    if args.point:
        points = [parse_point(value) for value in args.point]
        parts["points"] = Points(np.array([p[:2] for p in points]), np.array([p[2] for p in points]))
    if args.box:
        parts["box"] = parse_box(args.box)
    if args.exemplar:
        exemplars = [parse_exemplar(value) for value in args.exemplar]
        parts["exemplars"] = Exemplars(np.array([b.as_array() for b, _ in exemplars]), np.array([lab for _, lab in exemplars]))
    if args.mask_prompt:
        try:
            parts["mask"] = MaskPrompt(read_mask(args.mask_prompt))
        except PromptError as exc:
            raise PromptError(f"--mask-prompt {args.mask_prompt}: {exc}") from exc
    return dataclasses.replace(prompt, **parts)


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """The prompt flags :func:`prompt_from_args` reads."""
    group = parser.add_argument_group("prompt (original-image pixels, x = column, y = row)")
    group.add_argument(
        "--point", action="append", metavar="X,Y[,LABEL]", help="a click; LABEL 1 include (default) or 0 exclude; repeatable"
    )
    group.add_argument("--box", metavar="X0,Y0,X1,Y1", help="a box (x1, y1 exclusive)")
    group.add_argument("--mask-prompt", type=Path, metavar="MASK", help="a 0/255 mask to refine")
    group.add_argument(
        "--exemplar",
        action="append",
        metavar="X0,Y0,X1,Y1[,LABEL]",
        help="an example box of the concept (sam3); LABEL 1 positive (default) or 0 negative; repeatable",
    )
    group.add_argument("--prompt-file", type=Path, metavar="PROMPT.json", help="a saved prompt; flags override its parts")


#: ``segment --help``'s description (plain text: a terminal shows no markup).
DESCRIPTION = """\
Segment one image from a prompt: clicks (--point X,Y[,LABEL], repeatable), a box (--box X0,Y0,X1,Y1; x1, y1 \
exclusive), a mask to refine (--mask-prompt), a text (--text), a visual reference (--reference with \
--reference-mask), several at once, or a saved prompt (--prompt-file; flags replace its parts of the same kind). \
Coordinates are original-image pixels, x = column, y = row. --classes segments several classes into one label map.
The best-scoring candidate is written as a 0/255 mask (PNG or TIFF), and stderr says how it was made and its score."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment one image from points, a box, a mask, a text or a visual reference (or several classes)",
        description=DESCRIPTION,
    )
    parser.add_argument("image", type=Path, help="PNG, JPEG, BMP, TIFF or .npy image")
    add_prompt_arguments(parser)
    semantic_flags.add_arguments(parser)
    add_tuned_argument(parser)
    parser.add_argument("--backend", default="classical", help=f"one of {', '.join(backend_names())} (default classical)")
    parser.add_argument("--model-type", default="vit_b", help="SAM architecture: vit_b, vit_l, vit_h (default vit_b)")
    parser.add_argument("--checkpoint", type=Path, help="SAM weights file (default: the official checkpoint)")
    add_device_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output mask (.png or .tif; lossy JPEG is refused)")
    parser.add_argument("--overlay", type=Path, help="also write the mask, its outline and the prompt over the image")
    parser.add_argument("--save-prompt", type=Path, help="also write the prompt used, as JSON")
    parser.add_argument("--multimask", action="store_true", help="ask for several candidates and keep the best")
    parser.add_argument("--plane", type=int, help="plane of a TIFF/.npy stack (default the first)")
    tiling_flags.add_arguments(parser.add_argument_group("large images"))
    set_memory_advice(parser, "use --precision bf16 or fp16, or a smaller image")
    parser.set_defaults(func=run)


def describe(prediction: Prediction, backend: str) -> str:
    """``score 0.412 (classical: grabcut (box prior))``: the best mask's score and how it was made."""
    made = f"{backend}: {prediction.method}" if prediction.method else backend
    return f"score {float(prediction.scores[prediction.best]):.3f} ({made})"


def make_segmenter(args: argparse.Namespace, progress: Callable[[int, int, str], None]) -> Segmenter:
    """The backend named by ``--backend`` with its model flags (``--tuned``: the tuned CLIPSeg), tiled with ``--tile-shape``."""
    tiling = tiling_flags.tiling_options(args, args.backend)
    segmenter = _backend(args, progress)
    return TiledSegmenter(segmenter, **tiling) if tiling else segmenter


def _backend(args: argparse.Namespace, progress: Callable[[int, int, str], None]) -> Segmenter:
    if args.tuned is not None:
        return tuned_segmenter(args)
    with local_weights_flags(transformers="--model-dir DIR", sam="--checkpoint PATH"):
        if args.backend in semantic_flags.BACKENDS:
            return semantic_flags.make_segmenter(args)
        if args.backend == "sam":
            return create(
                "sam", model_type=args.model_type, checkpoint=args.checkpoint, device=args.device,
                precision=args.precision, progress=progress,
            )
    if args.checkpoint is not None:
        raise SegpromptError(f"--checkpoint is only used by the sam backend, not {args.backend!r}")
    options = backend_options(args.backend)
    refuse_unused_device(args, args.backend, "device" in options)
    if args.precision != "fp32" and "precision" not in options:
        raise SegpromptError(f"--precision {args.precision}: the {args.backend!r} backend runs in float32 only")
    return create_from_options(args.backend, **{name: getattr(args, name) for name in ("device", "precision") if name in options})


def output_paths(args: argparse.Namespace) -> dict[str, Path]:
    """``{flag: path}`` of every file this command writes, checked by :func:`check_outputs` before any work."""
    outputs = {"--out": Path(args.out)}
    if getattr(args, "classes", None) is not None:
        outputs["--out (class names)"] = semantic_flags.class_names_path(args.out)
    if args.overlay:
        outputs["--overlay"] = Path(args.overlay)
    if getattr(args, "save_prompt", None):
        outputs["--save-prompt"] = Path(args.save_prompt)
    backend = getattr(args, "backend", None)
    if backend in CONCEPT_BACKENDS or (backend == "composed" and getattr(args, "proposer", None) in CONCEPT_BACKENDS):
        outputs["--out (instances)"] = instances_path(args.out)
    return outputs


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable or clashing outputs before the image is read or a model loaded.

    Raises:
        ImageError: ``--out`` / ``--overlay`` of a type that cannot be written.
        StorageError: a folder that is read-only, not a folder, or the path of a folder.
        SegpromptError: two outputs naming the same file.
    """
    outputs = output_paths(args)
    check_output_type(args.out, MASK_SUFFIXES)
    if args.overlay:
        check_output_type(args.overlay)
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        resolved = path.resolve()
        if resolved in seen:
            raise SegpromptError(f"{flag} {path} is the same file as {seen[resolved]}")
        seen[resolved] = f"{flag} {path}"
    check_writable(outputs.values())


#: Backends whose embeddings ``segment`` keeps in the embedding cache (a few MB per image; SAM 3's are ~110 MB).
CACHED_BACKENDS = ("sam", "sam2", "sam-hq", "edgetam", "sam3-tracker")
#: Backends answering with every instance of a concept: ``--out`` gets a label map and an instances table
#: (the SAM 3 routes when no point, box or mask picks one instance).
CONCEPT_BACKENDS = ("sam3", "sam3-refine", "sam3-reference")


def instances_path(out: str | Path) -> Path:
    """``labels.png`` -> ``labels.instances.json``: one row per instance label."""
    return Path(out).with_suffix(".instances.json")


def instance_rows(instances: Instances) -> list[dict[str, Any]]:
    """``label``, ``score``, ``box`` (x0, y0, x1, y1), ``class_name`` and ``area`` of each instance."""
    return [
        {
            "label": int(label),
            "score": float(score),
            "box": [float(v) for v in box],
            "class_name": None if instances.class_names is None else instances.class_names[index],
            "area": int(instances.masks[index].sum()),
        }
        for index, (label, score, box) in enumerate(zip(instances.labels, instances.scores, instances.boxes))
    ]


def write_instances(args: argparse.Namespace, image: np.ndarray, prompt: Prompt, instances: Instances, backend: str) -> None:
    """Write every instance, all files or none: ``--out`` label map (1..N best first), its instances table,
    ``--overlay`` and ``--save-prompt``."""
    labels = instances.to_label_map()
    files = {
        args.out: mask_bytes(args.out, labels),
        instances_path(args.out): (json.dumps(instance_rows(instances), indent=1) + "\n").encode("utf-8"),
    }
    if args.overlay:
        files[args.overlay] = image_bytes(args.overlay, overlay(image, labels))
    if args.save_prompt:
        files[args.save_prompt] = prompt.to_json(indent=1).encode("utf-8")
    write_files(files)
    print(f"{args.out}: {len(instances)} instances ({backend})", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    check_device(args)
    check_outputs(args)
    image = read_image(args.image, plane=args.plane)
    classes = semantic_flags.classes_from_args(args)
    if classes is not None:
        with tqdm_progress("step") as progress:
            semantic_flags.run_classes(args, image, classes, make_segmenter(args, progress), progress)
        return 0
    prompt = tuned_prompt(args, prompt_from_args(args))
    if prompt.is_empty():
        raise PromptError(
            "no prompt: give --point, --box, --mask-prompt, --exemplar, --prompt-file, --text, --reference or --classes"
        )
    prompt.validate_for(image.shape[:2])
    from ..cache import EmbeddingCache

    with tqdm_progress("step") as progress:
        segmenter = make_segmenter(args, progress)
        segmenter.check_prompt(prompt)
        cached = args.backend in CACHED_BACKENDS
        embedding = EmbeddingCache().embed(segmenter, image, progress) if cached else segmenter.embed(image, progress)
    prediction = segmenter.predict(embedding, prompt, multimask=args.multimask)
    if isinstance(prediction, InstancesPrediction) and prediction.instances is not None:
        write_instances(args, image, prompt, prediction.instances, segmenter.name)
        return 0
    mask = prediction.best_mask
    files = {args.out: mask_bytes(args.out, mask)}
    if args.overlay:
        files[args.overlay] = image_bytes(args.overlay, overlay(image, mask, prompt=prompt))
    if args.save_prompt:
        files[args.save_prompt] = prompt.to_json(indent=1).encode("utf-8")
    write_files(files)  # all or none
    print(f"{args.out}: {int(mask.sum())} of {mask.size} pixels, {describe(prediction, segmenter.name)}", file=sys.stderr)
    return 0
