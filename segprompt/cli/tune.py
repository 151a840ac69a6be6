"""``segprompt tune``: learn prompts for a frozen CLIPSeg on a dataset folder.

Example::

    segprompt tune --method coop --data ../shared/data/kvasir_seg --out runs/kvasir-coop
    segprompt segment image.jpg --tuned runs/kvasir-coop --out mask.png

``segment``'s ``--tuned DIR`` flag (:func:`add_tuned_argument`,
:func:`tuned_segmenter`, :func:`tuned_prompt`) segments with such a checkpoint.

The data folder is read through :func:`segprompt.datasets.open_dataset`
(its ``train`` split for training, ``val`` or ``test`` for validation); the
optional ``--texts`` JSON overrides the text prompts
(``data_cards/tuning_format.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..atomic import check_writable_dir
from ..backends.base import Segmenter
from ..errors import DatasetError, SegpromptError
from ..prompts import Prompt, Text
from .progress import tqdm_progress

#: CLI options that map to method hyper-parameters (only passed when given).
_METHOD_OPTIONS = {"n_ctx": "n_ctx", "depth": "prompt_depth", "heads": "heads"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..tuning import DEFAULT_BASE, method_names
    from ..tuning.train import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "tune",
        help="learn text / visual prompts for a frozen CLIPSeg (TuneVLSeg methods)",
        description="Train prompt parameters only (the CLIPSeg backbone stays frozen) on images + binary masks + text.",
    )
    parser.add_argument("--method", required=True, choices=method_names(), help="prompt-tuning method")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (any layout segprompt reads)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the checkpoint")
    parser.add_argument("--base", default=DEFAULT_BASE, help=f"CLIPSeg model folder or hub id (default {DEFAULT_BASE})")
    parser.add_argument("--texts", type=Path, help="JSON text-prompt overlay {'default': ..., 'texts': {id: phrase}}")
    parser.add_argument("--layout", help="dataset layout (default: detected)")
    parser.add_argument("--val-split", default=None, help="validation split name (default: 'val', else 'test')")
    parser.add_argument("--limit", type=int, help="use at most this many images per split (quick runs)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--image-size", type=int, default=352, help="side of the square the model sees (default 352)")
    parser.add_argument("--n-ctx", type=int, help="number of prompt vectors (default 4)")
    parser.add_argument("--depth", type=int, help="prompt depth (default: 1; vpt-deep / maple: 9, clipped to the model)")
    parser.add_argument("--heads", type=int, help="shared-attn: attention heads (default 16)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    parser.set_defaults(func=run)


def _split(dataset, name: str | None):
    if name is not None:
        return dataset.split(name)
    for candidate in ("val", "test"):
        try:
            return dataset.split(candidate)
        except DatasetError:
            continue
    raise DatasetError(f"{dataset.name}: no 'val' or 'test' split; name one with --val-split")


def _limited(dataset, limit: int | None):
    return dataset if limit is None else dataset.subset(list(dataset.ids)[:limit])


def run(args: argparse.Namespace) -> int:
    from ..datasets import open_dataset
    from ..tuning import TextOverlay, TrainConfig, TunedCLIPSeg, build_pairs, load_base, train

    if args.limit is not None and args.limit < 1:
        raise SegpromptError(f"--limit {args.limit}: must be at least 1")
    if args.image_size < 16:
        raise SegpromptError(f"--image-size {args.image_size}: must be at least 16")
    check_writable_dir(args.out)
    overlay = TextOverlay.read(args.texts) if args.texts is not None else None
    dataset = open_dataset(args.data, layout=args.layout)
    train_pairs = build_pairs(_limited(dataset.split("train"), args.limit), args.image_size, overlay)
    val_pairs = build_pairs(_limited(_split(dataset, args.val_split), args.limit), args.image_size, overlay)
    base_model = str(Path(args.base).resolve()) if Path(args.base).exists() else args.base
    hyperparameters = {key: getattr(args, option) for option, key in _METHOD_OPTIONS.items() if getattr(args, option) is not None}
    tuned = TunedCLIPSeg.create(load_base(args.base), base_model, args.method, args.image_size, **hyperparameters)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=not args.no_augment, seed=args.seed)
    print(
        f"tune {args.method}: {tuned.net.method.num_trainable():,} trainable parameters, "
        f"{len(train_pairs)} training / {len(val_pairs)} validation pairs"
    )
    with tqdm_progress(unit="epoch") as progress:
        result = train(tuned, train_pairs, val_pairs, args.out, config, progress, resume=args.resume)
    best = result.history[result.best_epoch - 1]
    print(
        f"best epoch {result.best_epoch}: val Dice {best['val_dice']:.3f}, IoU {best['val_iou']:.3f}; "
        f"checkpoint in {args.out}"
    )
    return 0


#: The backend a tuning checkpoint is served by.
TUNED_BACKEND = "clipseg-tuned"


def add_tuned_argument(parser: argparse.ArgumentParser) -> None:
    """``--tuned DIR`` for ``segment``."""
    parser.add_argument(
        "--tuned",
        type=Path,
        metavar="DIR",
        help="segment with prompts learnt by `segprompt tune` (its --out folder); "
        "the text is --text or the checkpoint's default prompt",
    )


def tuned_segmenter(args: argparse.Namespace) -> Segmenter:
    """The ``clipseg-tuned`` backend on ``args.tuned``.

    Raises:
        SegpromptError: ``--backend`` names another backend than the default or ``clipseg-tuned``.
    """
    from ..backends import create

    if args.backend not in ("classical", TUNED_BACKEND):
        raise SegpromptError(f"--tuned segments with the {TUNED_BACKEND} backend; drop --backend {args.backend}")
    return create(TUNED_BACKEND, checkpoint=args.tuned)


def tuned_prompt(args: argparse.Namespace, prompt: Prompt) -> Prompt:
    """``prompt`` with the checkpoint's default text when ``--tuned`` is given without any text."""
    if getattr(args, "tuned", None) is None or prompt.text is not None:
        return prompt
    from ..tuning.tuned import read_metadata

    default = read_metadata(args.tuned).get("default_text")
    if not default:
        raise SegpromptError(f"--tuned {args.tuned}: the checkpoint has no default text; give --text")
    return dataclasses.replace(prompt, text=Text(default))
