"""``segprompt bench BENCHMARK ...``: run a prompt benchmark.

Each benchmark is a sub-verb living in its own module, which exposes
``add_parser(subparsers)`` like a verb module does; adding one means adding
its module and one entry to :data:`BENCHMARK_MODULES`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
from typing import Callable

from ..atomic import check_writable_dir

#: ``sub-verb -> module`` with ``add_parser(subparsers)``.
BENCHMARK_MODULES: dict[str, str] = {
    "pointprompt": "segprompt.cli.bench_pointprompt",
    "show-or-tell": "segprompt.cli.bench_showortell",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a prompt benchmark (pointprompt, show-or-tell)",
        description="Run a prompt benchmark on a dataset; results go to an output folder and resume after interruption.",
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    benchmarks.required = True
    for module_name in BENCHMARK_MODULES.values():
        importlib.import_module(module_name).add_parser(benchmarks)
    for benchmark in benchmarks.choices.values():
        benchmark.set_defaults(func=functools.partial(_run_with_writable_out, benchmark.get_default("func")))


def _run_with_writable_out(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Refuse an unwritable ``--out`` before the dataset is opened or a model loaded (a run writes nothing else)."""
    check_writable_dir(args.out)
    return run(args)
