"""The automatic point-prompt strategy interface and its registry.

Coordinate frame: every point a strategy returns is an ``(x, y)`` =
``(column, row)`` pixel position of the original image (the frame of
:class:`segprompt.prompts.Points`), stored as float64 but always on a pixel
centre, so ``region[int(y), int(x)]`` is the pixel it names.

A strategy picks include points inside the object mask and exclude points
inside the background (the complement of the mask, minus ignored pixels).
Static strategies answer with one :class:`PointSet`; the error-driven one
answers with one per click (a timestep each), as a human annotator does.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

import numpy as np

from ...errors import SegpromptError
from ...registry import Registry
from ...prompts import Points, Prompt


class StrategyError(SegpromptError, ValueError):
    """An unknown strategy name or a point count that cannot be used."""


@dataclass(frozen=True, eq=False)
class PointSet:
    """Include and exclude points of one prompt.

    Attributes:
        include: ``(n, 2)`` float64 ``(x, y)`` positions inside the object.
        exclude: ``(m, 2)`` float64 ``(x, y)`` positions in the background.
    """

    include: np.ndarray
    exclude: np.ndarray

    def __post_init__(self) -> None:
        for name in ("include", "exclude"):
            array = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1, 2)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.include) + len(self.exclude)

    def to_prompt(self) -> Prompt:
        """The :class:`Prompt` of these points (include label 1, exclude label 0)."""
        return Prompt(points=Points.from_lists(self.include.tolist(), self.exclude.tolist()))

    @classmethod
    def from_points(cls, points: Points) -> "PointSet":
        return cls(points.include, points.exclude)


@dataclass
class Target:
    """What a strategy may look at for one object.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` bool ground-truth object mask (non-empty).
        ignore: ``(H, W)`` bool pixels that belong to neither side, or ``None``.
        features: ``(h, w, C)`` float32 image features of the model on a grid
            covering the whole image at any resolution (pixel ``(x, y)`` falls
            in cell ``(y * h // H, x * w // W)``), or ``None`` when the strategy
            should compute its own.
        predict: maps a :class:`PointSet` to the ``(H, W)`` bool mask the
            benchmarked model answers; needed by interactive strategies only.
        cache: maps derived from the image (grey, local entropy, saliency,
            CIELAB), computed once by the strategies that need them and shared
            by the include and exclude picks.
    """

    image: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None = None
    features: np.ndarray | None = None
    predict: Callable[[PointSet], np.ndarray] | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def background(self) -> np.ndarray:
        """``(H, W)`` bool: not the object and not ignored."""
        background = ~self.mask
        if self.ignore is not None:
            background &= ~self.ignore
        return background

    @property
    def gray(self) -> np.ndarray:
        """``(H, W)`` uint8 luminance of the image (computed once)."""
        if "gray" not in self.cache:
            import cv2

            self.cache["gray"] = cv2.cvtColor(np.ascontiguousarray(self.image), cv2.COLOR_RGB2GRAY)
        return self.cache["gray"]


def region_xy(region: np.ndarray) -> np.ndarray:
    """``(N, 2)`` int64 ``(x, y)`` positions of the ``True`` pixels of ``region``, row-major order."""
    rows, cols = np.nonzero(region)
    return np.stack([cols, rows], axis=1).astype(np.int64)


class Strategy(ABC):
    """An automatic way of placing points for one object."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def timesteps(self, target: Target, n_include: int, n_exclude: int, rng: np.random.Generator) -> list[PointSet]:
        """The prompts of successive timesteps (at least one); each holds every point placed so far."""

    def select(self, target: Target, n_include: int, n_exclude: int, rng: np.random.Generator) -> PointSet:
        """The final prompt."""
        return self.timesteps(target, n_include, n_exclude, rng)[-1]


class RegionStrategy(Strategy):
    """A static strategy: one rule picks the include points in the object and,
    applied again to the background, the exclude points. One timestep.

    Subclasses implement :meth:`pick`. A subclass whose rule starts from a
    random pixel may take ``seed_point``: the PointPrompt reference code draws
    that random point *in addition* to the counts it is given, so each side
    gets one more point (``n + 1`` include, ``m + 1`` exclude, one exclude
    even when ``m = 0``).
    """

    #: Pick one random point more on each side (see the class docstring).
    seed_point: bool = False

    @abstractmethod
    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """Pick up to ``n`` distinct pixels of the non-empty bool ``region``.

        Returns:
            ``(k, 2)`` int64 ``(x, y)`` positions with ``k = min(n, region.sum())``.
        """

    def timesteps(self, target: Target, n_include: int, n_exclude: int, rng: np.random.Generator) -> list[PointSet]:
        check_counts(n_include, n_exclude)
        extra = int(self.seed_point)
        include = self.pick(target, target.mask, n_include + extra, rng)
        background = target.background
        exclude = (
            self.pick(target, background, n_exclude + extra, rng)
            if n_exclude + extra and background.any()
            else np.zeros((0, 2), np.int64)
        )
        return [PointSet(include, exclude)]


def check_counts(n_include: int, n_exclude: int) -> None:
    if int(n_include) < 1:
        raise StrategyError(f"n_include must be at least 1, got {n_include}")
    if int(n_exclude) < 0:
        raise StrategyError(f"n_exclude must be non-negative, got {n_exclude}")


#: Every strategy, in report order: the paper's six, then the additions.
STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy",
    (
        "segprompt.pointprompt.strategies.uniform",
        "segprompt.pointprompt.strategies.kmedoids",
        "segprompt.pointprompt.strategies.corners",
        "segprompt.pointprompt.strategies.entropy",
        "segprompt.pointprompt.strategies.maxdist",
        "segprompt.pointprompt.strategies.saliency",
        "segprompt.pointprompt.strategies.centre",
        "segprompt.pointprompt.strategies.interactive",
    ),
    error=StrategyError,
)

T = TypeVar("T", bound=type[Strategy])


def register(cls: T) -> T:
    """Class decorator adding a :class:`Strategy` under ``cls.name`` (a taken name raises)."""
    return STRATEGIES.register(cls)


def strategy_names() -> list[str]:
    """Registered strategy names in registration order."""
    return STRATEGIES.names()


def create_strategy(name: str, **options: Any) -> Strategy:
    """Instantiate the strategy registered as ``name``."""
    return STRATEGIES.create(name, **options)


def strategy_rng(seed: int, *key: str) -> np.random.Generator:
    """A generator determined by ``seed`` and the key strings only.

    Every (image, object, strategy) unit gets its own stream, so a resumed run
    draws exactly the points an uninterrupted run draws.
    """
    return np.random.default_rng([int(seed)] + [zlib.crc32(part.encode("utf-8")) for part in key])
