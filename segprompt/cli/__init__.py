"""The ``segprompt`` command line.

Each verb lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers an ``argparse`` sub-parser whose
``func`` default takes the parsed arguments and returns an exit code. Adding a
verb means adding a module and one entry to ``_VERB_MODULES``.

User mistakes (:class:`~segprompt.errors.SegpromptError`) are printed as one
line on stderr with exit code 2, never as a traceback. So is an
:class:`OSError` of the environment that names its file (a full disk, a
read-only folder, missing permissions) wherever it is raised, and a CUDA
out-of-memory error (``torch.cuda.OutOfMemoryError``, by type), which says
what the verb can lower (its ``memory_advice``, :mod:`segprompt.cli.device_flags`).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import textwrap
from typing import Sequence

from ..errors import SegpromptError, StorageError

_VERB_MODULES: tuple[str, ...] = (
    "segprompt.cli.segment",
    "segprompt.cli.everything",
    "segprompt.cli.refine",
    "segprompt.cli.replay",
    "segprompt.cli.segment_volume",
    "segprompt.cli.demo",
    "segprompt.cli.models",
    "segprompt.cli.datasets",
    "segprompt.cli.bench",
    "segprompt.cli.tune",
)


#: OSError numbers that describe the machine, not a bug: reported as one line when the error names its file.
_ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EISDIR", "ENOTDIR", "ENOENT", "ENAMETOOLONG")
    if hasattr(errno, name)
)


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to every option whose help does not name its default.

    Descriptions and epilogs keep their line breaks (lists stay lists); each
    line longer than the terminal is wrapped under its own indentation.
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines = []
        for line in text.splitlines():
            hanging = indent + " " * (len(line) - len(line.lstrip()) + 4 * line.startswith(" "))
            lines.append(textwrap.fill(line.strip(), width, initial_indent=indent + line[: len(line) - len(line.lstrip())],
                                       subsequent_indent=hanging) if line.strip() else "")
        return "\n".join(lines)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or (isinstance(default, (list, tuple)) and not default)
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


class ArgumentParser(argparse.ArgumentParser):
    """Every parser of the ``segprompt`` command (sub-parsers inherit the class): :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="segprompt",
        description="Interactive segmentation prompting workbench: segment images from points, boxes, masks, "
        "text and visual references; run prompt benchmarks; tune prompts.",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for module_name in _VERB_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost sub-parser ``args`` went through (``segprompt bench pointprompt`` -> its parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return chosen_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag is reported with the usage of the verb it was given to."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    try:
        return int(args.func(args) or 0)
    except SegpromptError as exc:
        print(f"segprompt {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None or exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        print(f"segprompt {args.verb}: error: {StorageError.from_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"segprompt {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if "torch" not in sys.modules:  # no torch, no torch out-of-memory error
            raise
        from ..devices import device_memory_error, is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        from .device_flags import DEFAULT_MEMORY_ADVICE

        error = device_memory_error(exc, getattr(args, "memory_advice", DEFAULT_MEMORY_ADVICE))
        print(f"segprompt {args.verb}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
