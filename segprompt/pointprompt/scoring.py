"""From result rows to the numbers of the benchmark.

A *unit* is one (image, object, prompt source): an automatic strategy or a
human prompt set. Its timesteps give three IoUs: ``first``, ``best`` and
``last``; an automatic unit is scored by its ``last`` (a static strategy has a
single timestep; error-driven clicking ends at its last click), a human unit
by ``best``, ``first`` and ``last`` as the PointPrompt paper does.

With ``recorded_best`` (the paper's protocol, human IoUs as the PointPrompt
release records them) a human unit's best timestep is the one the release's
``sorts`` put first, and its first and last timesteps are those of the best
one's prompting round (``eachround``), as the reference's
``gather_statistics.py`` reads them.

The human-vs-automatic gap of a category is ``100 (H - A) / A`` percent, with
``H`` the mean best-timestep IoU of the human units and ``A`` the mean IoU of
the automatic units, both over the objects that have human prompts (so the
two sides see the same objects). ``gap_strategies`` limits ``A`` to those
strategies (the paper's six); every other strategy is compared with the
humans on its own (``separate``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Sequence

import numpy as np

HUMAN = "human"
AUTO = "auto"


@dataclass(frozen=True)
class Unit:
    """The IoUs of one (image, object, source) over its timesteps."""

    image_id: str
    object_id: str
    category: str
    source: str
    strategy: str
    first: float
    best: float
    last: float
    timesteps: int

    @property
    def score(self) -> float:
        """``best`` for a human unit, ``last`` for an automatic one."""
        return self.best if self.source == HUMAN else self.last


def units(rows: Iterable[dict[str, Any]], recorded_best: bool = False) -> list[Unit]:
    """Group rows by (image, object, strategy) into :class:`Unit` s, in first-seen order.

    ``recorded_best``: a unit whose rows carry a recorded rank takes its best
    timestep from it and its first / last timesteps from the best's round.
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["image_id"], row["object_id"], row["strategy"])].append(row)
    out = []
    for (image_id, object_id, strategy), members in groups.items():
        members = sorted(members, key=lambda row: row["timestep"])
        ranked = [row for row in members if row.get("recorded_rank", -1) >= 0] if recorded_best else []
        if ranked:
            best = min(ranked, key=lambda row: row["recorded_rank"])
            members = [row for row in members if row.get("round", 0) == best.get("round", 0)]
        else:
            best = max(members, key=lambda row: row["iou"])
        out.append(
            Unit(image_id, object_id, members[0]["category"], members[0]["source"], strategy,
                 members[0]["iou"], best["iou"], members[-1]["iou"], len(members))
        )
    return out


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _gap(human: float, auto: float) -> float:
    return 100.0 * (human - auto) / auto if auto > 0 else float("nan")


def strategy_table(all_units: Sequence[Unit]) -> dict[str, dict[str, Any]]:
    """``{strategy: {source, n, mean_iou, mean_first, mean_best, mean_last}}``."""
    by_strategy: dict[str, list[Unit]] = defaultdict(list)
    for unit in all_units:
        by_strategy[unit.strategy].append(unit)
    return {
        name: {
            "source": members[0].source,
            "n": len(members),
            "mean_iou": _mean([u.score for u in members]),
            "mean_first": _mean([u.first for u in members]),
            "mean_best": _mean([u.best for u in members]),
            "mean_last": _mean([u.last for u in members]),
        }
        for name, members in by_strategy.items()
    }


def category_table(all_units: Sequence[Unit]) -> dict[str, dict[str, float]]:
    """``{category: {strategy: mean IoU}}`` (the score of :class:`Unit`)."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for unit in all_units:
        table[unit.category][unit.strategy].append(unit.score)
    return {cat: {name: _mean(values) for name, values in row.items()} for cat, row in table.items()}


def _human_vs_auto(members: Sequence[Unit], gap_strategies: Collection[str] | None = None) -> dict[str, Any] | None:
    human = [u for u in members if u.source == HUMAN]
    prompted = {(u.image_id, u.object_id) for u in human}
    compared = [u for u in members if u.source == AUTO and (u.image_id, u.object_id) in prompted]
    auto = [u for u in compared if gap_strategies is None or u.strategy in gap_strategies]
    if not human or not auto:
        return None
    per_strategy: dict[str, list[float]] = defaultdict(list)
    for unit in auto:
        per_strategy[unit.strategy].append(unit.score)
    best_strategy = max(per_strategy, key=lambda name: _mean(per_strategy[name]))
    out = {
        "n_objects": len(prompted),
        "human_first": _mean([u.first for u in human]),
        "human_best": _mean([u.best for u in human]),
        "human_last": _mean([u.last for u in human]),
        "human_best_first_gap": _mean([u.best - u.first for u in human]),
        "auto_mean": _mean([u.score for u in auto]),
        "auto_best_strategy": best_strategy,
        "auto_best": _mean(per_strategy[best_strategy]),
    }
    out["gap_percent"] = _gap(out["human_best"], out["auto_mean"])
    out["gap_vs_best_auto_percent"] = _gap(out["human_best"], out["auto_best"])
    separate: dict[str, list[float]] = defaultdict(list)
    for unit in compared:
        if gap_strategies is not None and unit.strategy not in gap_strategies:
            separate[unit.strategy].append(unit.score)
    out["gap_strategies"] = sorted(per_strategy)
    out["separate"] = {
        name: {"auto_mean": _mean(values), "gap_percent": _gap(out["human_best"], _mean(values))}
        for name, values in separate.items()
    }
    return out


def human_vs_auto(all_units: Sequence[Unit], gap_strategies: Collection[str] | None = None) -> dict[str, Any]:
    """``{"per_category": {category: comparison}, "overall": comparison}``; empty without human prompts.

    ``gap_strategies``: the automatic strategies averaged into the gap (``None``: all); each other one is
    compared with the humans on its own under ``"separate"``.
    """
    by_category: dict[str, list[Unit]] = defaultdict(list)
    for unit in all_units:
        by_category[unit.category].append(unit)
    per_category = {
        cat: cmp for cat, members in by_category.items() if (cmp := _human_vs_auto(members, gap_strategies))
    }
    overall = _human_vs_auto(all_units, gap_strategies)
    return {"per_category": per_category, "overall": overall} if overall else {}


def human_sets(all_units: Sequence[Unit]) -> dict[str, dict[str, dict[str, float]]]:
    """``{human set: {category: {first, best, last, best_first_gap, n}}}``."""
    table: dict[str, dict[str, list[Unit]]] = defaultdict(lambda: defaultdict(list))
    for unit in all_units:
        if unit.source == HUMAN:
            table[unit.strategy][unit.category].append(unit)
    return {
        name: {
            cat: {
                "n": len(members),
                "first": _mean([u.first for u in members]),
                "best": _mean([u.best for u in members]),
                "last": _mean([u.last for u in members]),
                "best_first_gap": _mean([u.best - u.first for u in members]),
            }
            for cat, members in row.items()
        }
        for name, row in table.items()
    }


def timing(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds per image: embedding, point selection, prediction, and their total."""
    per_image: dict[str, dict[str, float]] = defaultdict(lambda: {"embed": 0.0, "select": 0.0, "predict": 0.0})
    selected: set[tuple[str, str, str]] = set()
    for row in rows:
        image = per_image[row["image_id"]]
        image["embed"] = row["embed_seconds"]  # the same on every row of an image
        unit = (row["image_id"], row["object_id"], row["strategy"])
        if unit not in selected:  # selection time is per unit, repeated on its rows
            selected.add(unit)
            image["select"] += row["select_seconds"]
        image["predict"] += row["predict_seconds"]
    if not per_image:
        return {}
    out = {f"{k}_seconds_per_image": _mean([v[k] for v in per_image.values()]) for k in ("embed", "select", "predict")}
    out["seconds_per_image"] = sum(out.values())
    out["n_images"] = len(per_image)
    return out


def summarize(
    rows: Sequence[dict[str, Any]], gap_strategies: Collection[str] | None = None, recorded_best: bool = False
) -> dict[str, Any]:
    """The whole summary (``summary.json`` without the regression); see the module docstring for the options."""
    all_units = units(rows, recorded_best)
    return {
        "n_rows": len(rows),
        "n_images": len({row["image_id"] for row in rows}),
        "n_objects": len({(row["image_id"], row["object_id"]) for row in rows}),
        "strategies": strategy_table(all_units),
        "per_category": category_table(all_units),
        "human_sets": human_sets(all_units),
        "human_vs_auto": human_vs_auto(all_units, gap_strategies),
        "timing": timing(rows),
    }
