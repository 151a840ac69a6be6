"""The ``segprompt`` command line.

Each verb lives in its own module of this package and exposes
``add_parser(subparsers)``, which registers an ``argparse`` sub-parser whose
``func`` default takes the parsed arguments and returns an exit code. Adding a
verb means adding a module and one entry to ``_VERB_MODULES``.

User mistakes (:class:`~segprompt.errors.SegpromptError`) are printed as one
line on stderr with exit code 2, never as a traceback. So is an
:class:`OSError` of the environment that names its file (a full disk, a
read-only folder, missing permissions) wherever it is raised.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import Sequence

from ..errors import SegpromptError, StorageError

_VERB_MODULES: tuple[str, ...] = (
    "segprompt.cli.segment",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segprompt",
        description="Interactive segmentation prompting workbench: segment images from points, boxes, masks, "
        "text and visual references; run prompt benchmarks; tune prompts.",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    subparsers.required = True
    for module_name in _VERB_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
