"""Automatic point-prompt strategies (a registry; one class per strategy, one module each).

:data:`~.base.STRATEGIES` lists the built-in modules (its order is the report
order); see :mod:`.base` for the interface and the coordinate convention.
"""

from __future__ import annotations

from .base import (
    STRATEGIES,
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
    "STRATEGIES",
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
