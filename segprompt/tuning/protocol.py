"""The two tuning protocols: ours (the defaults) and the paper's (TuneVLSeg's reference code).

Every value of the ``paper`` protocol is taken from naamiinepal/tunevlseg at
its ACCV 2024 release: ``configs/experiment/coop/clipseg.yaml`` (base model,
20 epochs, seed 12345, augmentation, bicubic resize, ``insert_stop_at_last``),
``configs/callbacks/default.yaml`` (checkpoint on the highest ``val_dice``,
early stop on ``val_loss`` with patience 12 and ``min_delta`` 1e-4),
``configs/model/*`` (AdamW 2e-4, no weight decay, ``ReduceLROnPlateau``
0.2 / 5, ``DiceCELoss`` 1 / 0.2, prompt depth 1, the method internals
recorded in each method's ``paper_hyperparameters``), ``scripts/schedule_*.sh``
(batch 32; 16 with gradients accumulated over 2 batches for MaPLe and the
shared methods; the extra last layer off except in the MaPLe scripts, which
never turn the config's ``use_new_last_layer: true`` off) and
``configs/hparams_search/*_optuna.yaml`` (the search, :mod:`segprompt.tuning.search`).

A protocol only chooses defaults: every option given explicitly (CLI flag or
keyword) wins, and the run records the protocol's name and every setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import SegpromptError
from .methods import get_method_class
from .model import DEFAULT_BASE, ModelOptions
from .train import TrainConfig

#: The reference's CLIPSeg (``model_pretrained_path``): the 64-wide decoder with the plain transposed convolution.
PAPER_BASE = "CIDAS/clipseg-rd64"
#: Methods the reference trains with batch 16 and 2 accumulated batches (effective 32).
SMALL_BATCH_METHODS = frozenset({"maple", "shared-attn", "shared-sep"})
#: Methods whose reference scripts keep the extra last layer on.
EXTRA_LAYER_METHODS = frozenset({"maple"})
#: The reference's VPT model adds the extra layer's output (``logits += ...``); the others blend it.
ADDITIVE_EXTRA_LAYER_METHODS = frozenset({"vpt-shallow", "vpt-deep"})
#: TPE seeds of the reference's ``hparams_search`` configs.
PAPER_SEARCH_SEEDS: Mapping[str, int] = {
    "coop": 12345, "cocoop": 1234, "maple": 12345, "shared-attn": 123456, "shared-sep": 4322, "vpt-shallow": 1234, "vpt-deep": 1234,
}  # fmt: skip
#: What a search minimises: the validation loss of the last epoch (what Lightning's ``callback_metrics`` hold
#: when the reference's ``train`` returns) or of the kept checkpoint.
OBJECTIVES = ("last_val_loss", "selected_val_loss")


@dataclass(frozen=True)
class Protocol:
    """The defaults one protocol gives a tuning run.

    Attributes:
        name: ``"ours"`` or ``"paper"``.
        base_model: hub id of the CLIPSeg to tune.
        interpolation: image resize to the model's square (``segprompt.tuning.data.INTERPOLATIONS``).
        full_stop: end every text prompt with ``"."``.
        with_test: ``True``: the run needs a test part (reported); ``None``: the dataset's test split when it has one.
        search_objective: what a hyper-parameter search minimises (a key of :data:`OBJECTIVES`).
        train_defaults: :class:`TrainConfig` fields this protocol sets.
    """

    name: str
    base_model: str
    interpolation: str
    full_stop: bool
    with_test: bool | None
    search_objective: str
    train_defaults: Mapping[str, Any] = field(default_factory=dict)

    def train_config(self, method: str, **overrides: Any) -> TrainConfig:
        """The :class:`TrainConfig` of ``method`` under this protocol, with ``overrides`` applied."""
        values: dict[str, Any] = {"protocol": self.name, **self.train_defaults}
        if self.name == "paper" and method in SMALL_BATCH_METHODS:
            values.update(batch_size=16, accumulate_batches=2)
        values.update(overrides)
        return TrainConfig(**values)

    def method_hyperparameters(self, method: str, **overrides: Any) -> dict[str, Any]:
        """Keyword hyper-parameters of ``method`` (the reference's internals in paper mode), with ``overrides``."""
        paper = dict(get_method_class(method).paper_hyperparameters) if self.name == "paper" else {}
        return {**paper, **overrides}

    def model_options(self, method: str, extra_layer: bool | None = None) -> ModelOptions:
        """How ``method``'s prompts read the model; ``extra_layer`` forces the extra last layer on or off."""
        if self.name == "ours":
            return ModelOptions(extra_layer="blend" if extra_layer else None)
        wanted = method in EXTRA_LAYER_METHODS if extra_layer is None else extra_layer
        mix = "add" if method in ADDITIVE_EXTRA_LAYER_METHODS else "blend"
        return ModelOptions(extra_layer=mix if wanted else None, prompts_in_decoder=True)

    def search_seed(self, method: str, seed: int) -> int:
        """The TPE sampler's seed: the reference's per-method seed in paper mode, else ``seed``."""
        return PAPER_SEARCH_SEEDS.get(method, seed) if self.name == "paper" else seed


OURS = Protocol(
    name="ours",
    base_model=DEFAULT_BASE,
    interpolation="linear",
    full_stop=False,
    with_test=None,
    search_objective="selected_val_loss",
)
PAPER = Protocol(
    name="paper",
    base_model=PAPER_BASE,
    interpolation="cubic",
    full_stop=True,
    with_test=True,
    search_objective="last_val_loss",
    train_defaults={
        "epochs": 20,
        "batch_size": 32,
        "select_on": "val_dice",
        "early_stop_delta": 1e-4,
        "augmentation": "paper",
        "seed": 12345,
    },
)
_PROTOCOLS = {protocol.name: protocol for protocol in (OURS, PAPER)}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (``"ours"`` or ``"paper"``).

    Raises:
        SegpromptError: an unknown name.
    """
    if name not in _PROTOCOLS:
        raise SegpromptError(f"unknown protocol {name!r}; known: {', '.join(_PROTOCOLS)}")
    return _PROTOCOLS[name]
