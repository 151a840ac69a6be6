"""Show-or-Tell figures: mIoU per domain and per-class text-vs-visual IoU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..io import write_figure


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_domains(summary: dict[str, Any], path: Path) -> None:
    """Grouped bars: one group per domain, one bar per method (mIoU x100)."""
    plt = _figure()
    domains = sorted(summary["domains"])
    methods = sorted({m for scores in summary["domains"].values() for m in scores})
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(domains) + 2), 3.5))
    width = 0.8 / max(len(methods), 1)
    for k, method in enumerate(methods):
        values = [summary["domains"][d].get(method, np.nan) for d in domains]
        ax.bar(np.arange(len(domains)) + k * width, values, width, label=method)
    ax.set_xticks(np.arange(len(domains)) + width * (len(methods) - 1) / 2, domains)
    ax.set_ylabel("mIoU (%)")
    ax.set_title("Show-or-Tell: mIoU per domain")
    ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        write_figure(path, fig, dpi=120)
    finally:
        plt.close(fig)


def plot_text_vs_visual(summary: dict[str, Any], path: Path) -> None:
    """Per class: best text method's IoU (x) against best visual method's IoU (y), std over seeds as error bars."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for dataset_name, entry in summary["datasets"].items():
        xs, ys, yerr, labels = [], [], [], []
        for class_name in entry["classes"]:
            best: dict[str, dict[str, Any]] = {}
            for result in entry["methods"].values():
                stats = result["per_class"][class_name]
                if stats["mean"] is None:
                    continue
                if result["modality"] not in best or stats["mean"] > best[result["modality"]]["mean"]:
                    best[result["modality"]] = stats
            if "text" in best and "visual" in best:
                xs.append(best["text"]["mean"])
                ys.append(best["visual"]["mean"])
                yerr.append(best["visual"]["std"] or 0.0)
                labels.append(class_name)
        if xs:
            ax.errorbar(xs, ys, yerr=yerr, fmt="o", capsize=2, label=dataset_name)
            for x, y, label in zip(xs, ys, labels):
                ax.annotate(label, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("text prompt IoU (%)")
    ax.set_ylabel("visual prompt IoU (%), mean ± std over seeds")
    ax.set_title("Per class: tell (x) vs show (y)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        write_figure(path, fig, dpi=120)
    finally:
        plt.close(fig)
