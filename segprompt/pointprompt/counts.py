"""How many include and exclude points an automatic strategy places.

The PointPrompt paper gives each strategy, per category, the average numbers
of include and exclude points its human annotators used at their best
timestep (:data:`PAPER_COUNTS`). Categories of other datasets are matched by
:data:`ALIASES` (case-insensitive); an unknown category gets the mean over the
paper's categories, :data:`DEFAULT_COUNTS`. ``"human"`` counts give each
object the include / exclude counts of its own human prompt (the last
timestep of the first prompt set, by name), so both sides click equally often;
objects without human prompts fall back to the paper's table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..prompts import Points
from .strategies.base import StrategyError, check_counts

if TYPE_CHECKING:
    from ..datasets.base import Sample

#: ``category -> (include, exclude)``, PointPrompt paper (Table of average human points).
PAPER_COUNTS: dict[str, tuple[int, int]] = {
    "Baseball bat": (4, 2),
    "Bird": (9, 1),
    "Bus": (7, 1),
    "Cat": (6, 1),
    "Clock": (8, 3),
    "Cow": (16, 4),
    "Dog": (8, 2),
    "Tie": (4, 2),
    "Stop sign": (8, 1),
    "Dolphin above": (7, 2),
    "Dolphin below": (10, 4),
    "Polyp": (14, 2),
    "Skin": (11, 2),
    "Breast": (4, 1),
    "Salt dome": (5, 3),
    "Chalk group": (8, 5),
}

#: Class names of segprompt's datasets that are one of the paper's categories.
ALIASES: dict[str, str] = {
    "baseball bat": "Baseball bat",
    "bird": "Bird",
    "bus": "Bus",
    "cat": "Cat",
    "clock": "Clock",
    "cow": "Cow",
    "dog": "Dog",
    "tie": "Tie",
    "stop sign": "Stop sign",
    "polyp": "Polyp",
    "skin": "Skin",
    "skin lesion": "Skin",
    "lesion": "Skin",
    "breast": "Breast",
    "benign": "Breast",
    "malignant": "Breast",
    "breast lesion": "Breast",
    "tumor": "Breast",
    "salt dome": "Salt dome",
    "chalk group": "Chalk group",
}

#: Rounded means of :data:`PAPER_COUNTS` (129/16 include, 36/16 exclude).
DEFAULT_COUNTS: tuple[int, int] = (8, 2)


@dataclass(frozen=True)
class PointCounts:
    """Point counts per category: the paper's table, or one fixed pair.

    Attributes:
        fixed: ``(include, exclude)`` for every category, or ``None`` for the
            paper's per-category table.
        match_human: use the counts of the object's human prompt where it has one.
    """

    fixed: tuple[int, int] | None = None
    match_human: bool = False

    def __post_init__(self) -> None:
        if self.fixed is not None:
            check_counts(*self.fixed)

    def for_object(self, category: str, human: Points | None = None) -> tuple[int, int]:
        """``(n_include, n_exclude)`` for an object of ``category`` whose human prompt (if any) is ``human``."""
        if self.match_human and human is not None and len(human.include):
            return len(human.include), len(human.exclude)
        return self.for_category(category)

    def for_category(self, category: str) -> tuple[int, int]:
        """``(n_include, n_exclude)`` for a category or class name."""
        if self.fixed is not None:
            return self.fixed
        name = ALIASES.get(category.strip().lower(), category)
        return PAPER_COUNTS.get(name, DEFAULT_COUNTS)

    @classmethod
    def parse(cls, text: str) -> "PointCounts":
        """``"paper"``, ``"human"`` or ``"I,E"`` (e.g. ``"5,2"``) -> counts; ``"5"`` means ``5,0``."""
        text = text.strip()
        if text.lower() in ("paper", "human"):
            return cls(match_human=text.lower() == "human")
        try:
            numbers = tuple(int(part) for part in text.split(","))
        except ValueError:
            raise StrategyError(f"--points: expected 'paper', 'human' or 'INCLUDE,EXCLUDE' (e.g. '5,2'), got {text!r}") from None
        if len(numbers) not in (1, 2):
            raise StrategyError(f"--points: expected 'paper', 'human' or 'INCLUDE,EXCLUDE', got {text!r}")
        return cls((numbers[0], numbers[1] if len(numbers) == 2 else 0))

    def describe(self) -> str:
        if self.fixed is not None:
            return f"{self.fixed[0]},{self.fixed[1]}"
        return "human" if self.match_human else "paper"


def human_reference(sample: "Sample") -> Points | None:
    """The points that ``"human"`` counts follow: the last timestep with points
    of the sample's first human prompt set (by name), or ``None``."""
    for name in sorted(sample.prompts):
        with_points = [prompt.points for prompt in sample.prompts[name] if prompt.points is not None]
        if with_points:
            return with_points[-1]
    return None
