"""Benchmark figures (matplotlib, Agg backend, written atomically as PNG)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_figure


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(path: Path, groups: list[str], series: dict[str, list[float]], title: str, ylabel: str) -> None:
    plt = _figure()
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(groups) * max(1, len(series)) + 1.5) + 2.5, 4.5))
    positions = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(positions, groups, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a bar
    fig.tight_layout()
    try:
        write_figure(path, fig, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)


def plot_categories(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """Mean IoU per category (x) and strategy or human set (bars)."""
    table = summary["per_category"]
    categories = sorted(table)
    names = list(summary["strategies"])
    series = {name: [table[cat].get(name, np.nan) for cat in categories] for name in names}
    _grouped_bars(Path(path), categories, series, "Mean IoU per category", "IoU")


def plot_human_vs_auto(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """Human first / best / last timestep against the automatic mean and best strategy, per category."""
    per_category = summary["human_vs_auto"]["per_category"]
    categories = sorted(per_category)
    keys = {
        "human first": "human_first",
        "human best": "human_best",
        "human last": "human_last",
        "auto mean": "auto_mean",
        "best auto strategy": "auto_best",
    }
    series = {label: [per_category[cat][key] for cat in categories] for label, key in keys.items()}
    gap = summary["human_vs_auto"]["overall"]["gap_percent"]
    _grouped_bars(Path(path), categories, series, f"Human vs automatic prompts (overall gap {gap:+.1f} %)", "IoU")


def plot_importance(regression: dict[str, Any], path: str | os.PathLike, model: str = "random_forest") -> None:
    """Horizontal bars of the feature importances of one regression model."""
    plt = _figure()
    importance = regression[model]["importance"]
    names = sorted(importance, key=importance.get)
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(names) + 1.5))
    ax.barh(names, [importance[n] for n in names])
    ax.set_title(f"{model}: R² = {regression[model]['r2']:.2f} (grouped {regression['folds']}-fold CV)")
    fig.tight_layout()
    try:
        write_figure(path, fig, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
