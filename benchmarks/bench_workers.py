"""``segprompt bench pointprompt`` on one process against ``--workers N`` (a local Dask cluster), in the same run.

Runs the same PointPrompt benchmark twice into temporary folders, once in
this process and once sharded by image over ``--workers`` worker processes,
and prints both wall times, their ratio, and whether the sharded run wrote the
same ``results.csv`` rows (timing columns aside) with no key twice. Example::

    python benchmarks/bench_workers.py                                  # classical backend, grabcut_scribbles
    python benchmarks/bench_workers.py --max-images 6 --workers 2 \\
        --data ../shared/data/kvasir_seg --strategies random entropy
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from segprompt.cli import main as segprompt_main
from segprompt.pointprompt.results import UNIT_KEY

TIMING_COLUMNS = {"embed_seconds", "select_seconds", "predict_seconds"}


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def _timed_run(argv: list[str]) -> float:
    start = time.perf_counter()
    if segprompt_main(argv) != 0:
        raise SystemExit(f"segprompt {' '.join(argv)} failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/grabcut_scribbles")
    parser.add_argument("--backend", default="classical")
    parser.add_argument("--strategies", nargs="+", default=["random", "max_distance", "shi_tomasi"])
    parser.add_argument("--max-images", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"--data {args.data}: no such folder (the shared data lives in ../shared/data)")

    with tempfile.TemporaryDirectory() as tmp:
        common = ["bench", "pointprompt", "--data", str(args.data), "--backend", args.backend, "--no-cache",
                  "--max-images", str(args.max_images), "--strategies", *args.strategies, "--no-human"]
        one = _timed_run([*common, "--out", f"{tmp}/one"])
        sharded = _timed_run([*common, "--out", f"{tmp}/sharded", "--workers", str(args.workers)])
        rows_one, rows_sharded = _rows(Path(tmp, "one")), _rows(Path(tmp, "sharded"))
    keys = [tuple(row[k] for k in (*UNIT_KEY, "timestep")) for row in rows_sharded]
    print(f"\nPointPrompt, {args.backend} backend, {args.max_images} images of {args.data.name}, "
          f"strategies {', '.join(args.strategies)}")
    print(f"{'run':<28}{'wall':>9}{'speed-up':>10}")
    print(f"{'one process':<28}{one:>8.1f}s{1.0:>9.1f}x")
    print(f"{f'{args.workers} Dask workers':<28}{sharded:>8.1f}s{one / sharded:>9.1f}x")
    print(f"rows: {len(rows_sharded)} sharded, {len(rows_one)} one-process; keys written twice: "
          f"{len(keys) - len(set(keys))}; same rows in the same order: {rows_sharded == rows_one}")


if __name__ == "__main__":
    main()
