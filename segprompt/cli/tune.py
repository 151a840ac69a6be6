"""``segprompt tune``: learn prompts for a frozen CLIPSeg on a dataset folder.

Example::

    segprompt tune --method coop --data ../shared/data/kvasir_seg --out runs/kvasir-coop
    segprompt tune --protocol paper --method maple --data DIR --out runs/paper-maple [--search]
    segprompt segment image.jpg --tuned runs/kvasir-coop --out mask.png

``segment``'s ``--tuned DIR`` flag (:func:`add_tuned_argument`,
:func:`tuned_segmenter`, :func:`tuned_prompt`) segments with such a checkpoint.

The data folder is read through :func:`segprompt.datasets.open_dataset` and
split as :func:`segprompt.tuning.data.tuning_parts` says; the optional
``--texts`` JSON overrides the text prompts (``data_cards/tuning_format.md``).
``--protocol`` picks the defaults (:mod:`segprompt.tuning.protocol`); every
option given explicitly wins over them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..atomic import check_writable_dir
from ..backends.base import Segmenter
from ..errors import SegpromptError
from ..prompts import Prompt, Text
from .device_flags import add_device_arguments, check_device, set_memory_advice
from .progress import tqdm_progress
from .weights import local_weights_flags

#: CLI options that map to method hyper-parameters (only passed when given).
_METHOD_OPTIONS = {"n_ctx": "n_ctx", "depth": "prompt_depth", "heads": "heads"}
#: CLI options that map to TrainConfig fields (only passed when given; else the protocol's value).
_TRAIN_OPTIONS = ("epochs", "batch_size", "accumulate_batches", "lr", "weight_decay", "seed")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..tuning import method_names
    from ..tuning.data import DEFAULT_PROMPT_KEY
    from ..tuning.protocol import OURS, PAPER
    from ..tuning.search import DEFAULT_TRIALS
    from ..tuning.methods import get_method_class

    parser = subparsers.add_parser(
        "tune",
        help="learn text / visual prompts for a frozen CLIPSeg (TuneVLSeg methods)",
        description="Train prompt parameters only (the CLIPSeg backbone stays frozen) on images + binary masks + text. "
        "Writes the kept checkpoint (prompts.safetensors, tuning.json), last.pt (resume) and summary.json to --out.",
        epilog="methods (--method):\n"
        + "\n".join(f"  {name}: {get_method_class(name).description}" for name in method_names()),
    )
    parser.add_argument("--method", required=True, choices=method_names(), help="prompt-tuning method (see below)")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (any layout segprompt reads)")
    parser.add_argument("--out", required=True, type=Path, help="output folder for the checkpoint")
    parser.add_argument(
        "--protocol", choices=("ours", "paper"), default="ours",
        help="defaults: ours, or the TuneVLSeg reference code's (base, epochs, batch, selection on val Dice, "
        "early stopping, augmentation, method internals, test-split report); see the README table",
    )  # fmt: skip
    parser.add_argument("--base", help=f"CLIPSeg model folder or hub id (default {OURS.base_model}; paper: {PAPER.base_model})")
    parser.add_argument("--texts", type=Path, help="JSON text-prompt overlay {'default': ..., 'texts': {id: phrase}}")
    parser.add_argument("--prompt-key", default=DEFAULT_PROMPT_KEY, help="which per-image text prompt of a tunevlseg "
                        f"folder to use: p0, p1, ... or 'random' (default {DEFAULT_PROMPT_KEY})")  # fmt: skip
    parser.add_argument("--layout", help="dataset layout (default: detected)")
    parser.add_argument("--val-split", default=None, help="validation split name (default: 'val', else 'test')")
    parser.add_argument("--test-split", default=None, help="test split to report the kept checkpoint on (default: 'test' "
                        "when the dataset has one; paper: required, 10%% seeded from the held-out part without split files)")  # fmt: skip
    parser.add_argument("--limit", type=int, help="use at most this many images per split (quick runs)")
    parser.add_argument("--epochs", type=int, help="default 100 (paper: 20)")
    parser.add_argument("--batch-size", type=int, help="default 4 (paper: 32; MaPLe and shared methods 16)")
    parser.add_argument("--accumulate-batches", type=int, help="optimizer step every N batches (default 1; paper: 2 "
                        "for MaPLe and shared methods)")  # fmt: skip
    parser.add_argument("--lr", type=float, help="default 2e-4")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay on Linear / conv weights (default 0)")
    parser.add_argument("--image-size", type=int, default=352, help="side of the square the model sees (default 352)")
    parser.add_argument("--n-ctx", type=int, help="number of prompt vectors (default 4)")
    parser.add_argument("--depth", type=int, help="prompt depth (default: 1; ours: vpt-deep / maple 9, clipped to the model)")
    parser.add_argument("--heads", type=int, help="shared-attn: attention heads (default 16)")
    parser.add_argument("--extra-layer", action=argparse.BooleanOptionalAction, default=None,
                        help="TuneVLSeg's extra last layer (x16 upsample + 5x5 conv, learnable 0.5 residual); "
                        "default off (paper: on for maple)")  # fmt: skip
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--seed", type=int, help="default 0 (paper: 12345)")
    parser.add_argument("--search", action="store_true", help="search lr, weight decay and prompt depth with Optuna TPE")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS, help=f"--search: trials (default {DEFAULT_TRIALS})")
    parser.add_argument("--resume", action="store_true", help="continue the run (or search) in --out where it stopped")
    add_device_arguments(parser, precision=False)
    set_memory_advice(parser, "lower --batch-size (with --accumulate-batches to keep the effective batch) or --image-size")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..datasets import open_dataset
    from ..devices import resolve_device
    from ..tuning import TextOverlay, TunedCLIPSeg, load_base
    from ..tuning.protocol import get_protocol
    from ..tuning.run import headline, load_run_data, run_tuning
    from ..tuning.search import run_search

    check_device(args)
    if args.limit is not None and args.limit < 1:
        raise SegpromptError(f"--limit {args.limit}: must be at least 1")
    if args.image_size < 16:
        raise SegpromptError(f"--image-size {args.image_size}: must be at least 16")
    check_writable_dir(args.out)
    protocol = get_protocol(args.protocol)
    overrides = {name: getattr(args, name) for name in _TRAIN_OPTIONS if getattr(args, name) is not None}
    config = protocol.train_config(args.method, augment=not args.no_augment, **overrides)
    config.check()
    overlay = TextOverlay.read(args.texts) if args.texts is not None else None
    dataset = open_dataset(args.data, layout=args.layout)
    data = load_run_data(
        dataset, protocol, args.image_size, overlay=overlay, val_split=args.val_split, test_split=args.test_split,
        limit=args.limit, prompt_key=args.prompt_key,
    )  # fmt: skip
    base_id = args.base or protocol.base_model
    base_model = str(Path(base_id).resolve()) if Path(base_id).exists() else base_id
    with local_weights_flags(transformers="--base DIR"):
        base = load_base(base_id)
    base.model.to(resolve_device(args.device))  # the prompts are created beside it (TunedCLIPSeg.create)
    given = {key: getattr(args, option) for option, key in _METHOD_OPTIONS.items() if getattr(args, option) is not None}
    options = protocol.model_options(args.method, args.extra_layer)

    def build(params: dict) -> TunedCLIPSeg:
        torch.manual_seed(config.seed)  # the same initial prompts for the same seed
        hyperparameters = protocol.method_hyperparameters(args.method, **given, **params)
        return TunedCLIPSeg.create(base, base_model, args.method, args.image_size, options, **hyperparameters)

    tuned = build({})
    sizes = data.description["pairs"]
    test = "" if sizes["test"] is None else f" / {sizes['test']} test"
    print(
        f"tune {args.method} ({protocol.name} protocol): {tuned.net.num_trainable():,} trainable parameters, "
        f"{sizes['train']} training / {sizes['val']} validation{test} pairs"
    )
    if args.search:
        model_config = base.model.config
        max_depth = None if args.method == "vpt-shallow" or "prompt_depth" in given else min(
            model_config.text_config.num_hidden_layers, model_config.vision_config.num_hidden_layers
        )
        with tqdm_progress(unit="trial") as progress:
            summary = run_search(
                build, data, args.out, config, max_depth=max_depth, objective=protocol.search_objective,
                seed=protocol.search_seed(args.method, config.seed), trials=args.trials, progress=progress, resume=args.resume,
            )  # fmt: skip
        best = summary["search"]["best_trial"]
        print(f"best trial {best}: {summary['search']['trials'][best]['params']}")
    else:
        with tqdm_progress(unit="epoch") as progress:
            summary = run_tuning(tuned, data, args.out, config, progress, resume=args.resume)
    print(f"best epoch {summary['best_epoch']} (on {summary['selected_on']}): {headline(summary)}; checkpoint in {args.out}")
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
    if getattr(args, "precision", "fp32") != "fp32":
        raise SegpromptError(f"--precision {args.precision}: the {TUNED_BACKEND} backend runs in float32 only")
    return create(TUNED_BACKEND, checkpoint=args.tuned, device=getattr(args, "device", None) or "auto")


def tuned_prompt(args: argparse.Namespace, prompt: Prompt) -> Prompt:
    """``prompt`` with the checkpoint's default text when ``--tuned`` is given without any text."""
    if getattr(args, "tuned", None) is None or prompt.text is not None:
        return prompt
    from ..tuning.tuned import read_metadata

    default = read_metadata(args.tuned).get("default_text")
    if not default:
        raise SegpromptError(f"--tuned {args.tuned}: the checkpoint has no default text; give --text")
    return dataclasses.replace(prompt, text=Text(default))
