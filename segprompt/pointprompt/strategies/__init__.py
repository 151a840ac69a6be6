"""Automatic point-prompt strategies (a registry; one class per strategy).

Importing this package registers every built-in strategy; see
:mod:`.base` for the interface and the coordinate convention.
"""

from __future__ import annotations

# Registration order is the report order: the paper's six strategies, then the additions.
from . import uniform, kmedoids, corners, entropy, maxdist, saliency, centre, interactive  # noqa: F401, I001
from .base import (
    PointSet,
    RegionStrategy,
    Strategy,
    StrategyError,
    Target,
    create_strategy,
    region_xy,
    register,
    strategy_names,
    strategy_rng,
)
from .kmedoids import kmedoids

__all__ = [
    "PointSet",
    "RegionStrategy",
    "Strategy",
    "StrategyError",
    "Target",
    "create_strategy",
    "kmedoids",
    "region_xy",
    "register",
    "strategy_names",
    "strategy_rng",
]
