"""The settings of a PointPrompt run, and the two protocols: ours (the defaults) and the paper's.

The ``paper`` protocol takes every choice from the reference code
(olivesgatech/PointPrompt: ``point_sampling/main.py`` and
``point_selection.py`` for the strategies and the scored mask,
``feature_extraction/`` for the features, ``finetuning SAM/`` for the
finetuning recipe, :data:`~segprompt.pointprompt.finetune.PAPER_FINETUNE`);
the README's table says where and why ours differ.
:meth:`BenchmarkConfig.for_protocol` gives a protocol's config with any
setting given explicitly winning; every setting but ``max_images`` joins the
run identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping

from ..errors import SegpromptError
from ..protocols import PROTOCOLS, check_choices, preset
from .counts import PointCounts
from .strategies import StrategyError, create_strategy, strategy_names
#: The strategies of the PointPrompt paper (saliency by spectral residual, see strategies.saliency).
PAPER_STRATEGIES: tuple[str, ...] = ("random", "kmedoids", "shi_tomasi", "entropy", "max_distance", "saliency")
#: Which of a prompt's candidate masks is scored: the highest-scored (``"best"``, of SAM's three when
#: multimask), the first of the three (``"first"``, the reference code's ``masks[0]``), or SAM's single mask.
SELECTIONS = ("best", "first", "single")
#: The SAM the reference code runs (``sam_vit_h_4b8939.pth``).
PAPER_MODEL_TYPE = "vit_h"
#: The reference code's knobs, as strategy options (see each strategy's attributes).
PAPER_STRATEGY_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "kmedoids": {"init": "heuristic"},
    "shi_tomasi": {"quality": 0.001, "min_distance": None, "erosion": "square", "init": "heuristic"},
    "entropy": {"seed_point": True},
    "max_distance": {"farthest_from": "first", "candidate_fraction": 0.15, "seed_point": True},
    "saliency": {"seed_point": True},
}


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one run.

    Attributes:
        strategies: automatic strategy names (see :func:`strategy_names`).
        counts: include/exclude points per category.
        seed: seeds every strategy (per image, object and strategy).
        human: also score the human prompt sets of the samples.
        max_images: score only the first ``max_images`` samples.
        multimask: SAM's multimask output for ``selection="best"``; ``None`` =
            only for single-point prompts (SAM's own advice).
        protocol: ``"ours"`` or ``"paper"``: the name of the defaults this config started from.
        selection: the scored mask, one of :data:`SELECTIONS` (``"first"``
            always decodes three; ``"single"`` never).
        strategy_options: ``{strategy: {option: value}}`` passed to each strategy.
        gap_strategies: the automatic strategies the human-automatic gap
            averages (the others are compared with the humans one by one);
            ``None``: all of them.
        human_scores: ``"model"`` scores every human prompt with the
            benchmarked model; ``"recorded"`` takes the IoU the dataset records
            for it (the PointPrompt release's ``scores``, its ``sorts`` for the
            best timestep and ``eachround`` for the first and last of the best's
            round) where there is one.
        features: the feature set the IoU regression uses, ``"ours"`` or ``"paper"``.
        regression_rows: regress on ``"all"`` rows or on the ``"human"`` ones.
    """

    strategies: tuple[str, ...] = field(default_factory=lambda: tuple(strategy_names()))
    counts: PointCounts = PointCounts()
    seed: int = 0
    human: bool = True
    max_images: int | None = None
    multimask: bool | None = None
    protocol: str = "ours"
    selection: Literal["best", "first", "single"] = "best"
    strategy_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    gap_strategies: tuple[str, ...] | None = None
    human_scores: Literal["model", "recorded"] = "model"
    features: Literal["ours", "paper"] = "ours"
    regression_rows: Literal["all", "human"] = "all"

    def __post_init__(self) -> None:
        check_choices(self, {"protocol": PROTOCOLS, "selection": SELECTIONS, "human_scores": ("model", "recorded"),
                             "features": PROTOCOLS, "regression_rows": ("all", "human")})  # fmt: skip
        if self.selection == "first" and self.multimask is False:
            raise SegpromptError("mask selection 'first' takes the first of SAM's three masks: it needs multimask output")
        if self.selection == "single" and self.multimask:
            raise SegpromptError("mask selection 'single' scores SAM's single mask: it cannot use multimask output")
        for name, options in self.strategy_options.items():
            try:
                create_strategy(name, **options)
            except TypeError as exc:
                raise StrategyError(f"strategy {name!r}: bad options {dict(options)} ({exc})") from None

    def multimask_for(self, n_points: int) -> bool:
        """Whether a prompt of ``n_points`` points is decoded with SAM's three masks."""
        if self.selection != "best":
            return self.selection == "first"
        return n_points == 1 if self.multimask is None else self.multimask

    def create_strategies(self) -> dict[str, Any]:
        """``{name: Strategy}`` of :attr:`strategies`, each with its :attr:`strategy_options`."""
        return {name: create_strategy(name, **self.strategy_options.get(name, {})) for name in self.strategies}

    @classmethod
    def for_protocol(cls, protocol: str, **overrides: Any) -> "BenchmarkConfig":
        """The config of ``protocol`` with ``overrides`` (explicit choices) applied.

        Raises:
            SegpromptError: an unknown protocol.
        """
        return cls(**preset(protocol, PAPER_DEFAULTS, overrides))

    def identity(self) -> dict[str, Any]:
        """Every field but ``max_images`` (which may change between runs): a resumed run must give the same.

        A field added to this class joins the run identity by itself; only a
        value that is not plain JSON needs its encoding here and in :meth:`from_identity`.
        """
        values = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "max_images"}
        return {
            **values, "strategies": list(self.strategies), "counts": self.counts.describe(),
            "strategy_options": {name: dict(options) for name, options in sorted(self.strategy_options.items())},
            "gap_strategies": None if self.gap_strategies is None else list(self.gap_strategies),
        }  # fmt: skip

    @classmethod
    def from_identity(cls, identity: Mapping[str, Any], max_images: int | None = None) -> "BenchmarkConfig":
        """The config whose :meth:`identity` is ``identity`` (other keys, e.g. a run identity's model, are ignored)."""
        values = {item.name: identity[item.name] for item in fields(cls) if item.name != "max_images"}
        gap = values["gap_strategies"]
        return cls(**{
            **values, "strategies": tuple(values["strategies"]), "counts": PointCounts.parse(values["counts"]),
            "gap_strategies": None if gap is None else tuple(gap), "max_images": max_images,
        })  # fmt: skip


#: What the paper's protocol sets (everything else as ours).
PAPER_DEFAULTS: Mapping[str, Any] = {
    "selection": "first",
    "multimask": True,
    "strategy_options": PAPER_STRATEGY_OPTIONS,
    "gap_strategies": PAPER_STRATEGIES,
    "human_scores": "recorded",
    "features": "paper",
    "regression_rows": "human",
}
