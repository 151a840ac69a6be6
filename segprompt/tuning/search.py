"""Hyper-parameter search over learning rate, weight decay and prompt depth (Optuna TPE), resumable.

The space and sampler are the reference's (``configs/hparams_search/*_optuna.yaml``):
``lr`` log-uniform in [1e-5, 5e-3], ``weight_decay`` log-uniform in
[1e-5, 1e-2], ``prompt_depth`` an integer in [1, 10] (capped at the model's
depth; not searched for ``vpt-shallow``); multivariate TPE with 10 random
start-up trials, 20 trials, minimising the validation loss (the last epoch's
in paper mode, as the reference's Lightning ``callback_metrics`` hold it; the
kept checkpoint's in ours). The reference also searches a few method-specific
knobs (CoCoOp / MaPLe hidden width and LoRA projection, Shared-Attention heads,
dropout, feed-forward width and norm placement, Shared-Separate width); those
stay at their defaults here.

Files in the output folder: ``search.db`` (the Optuna study, SQLite),
``trials/<number>/`` (each trial's run folder, itself resumable), and, once
every trial is done, the best trial's checkpoint copied to the folder itself
with ``summary.json`` (:mod:`segprompt.tuning.run`) holding a ``"search"``
entry. A killed search resumes where it stopped: the interrupted trial
continues from its ``last.pt`` with its parameters. Each trial draws its
parameters with a sampler seeded from ``(seed, trial number)`` and the finished
trials only, so a resumed search asks exactly what an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..atomic import write_files
from ..errors import SegpromptError
from ..progress import ProgressCallback, no_progress
from .run import RunData, report
from .train import LAST_STATE, TrainConfig, TrainResult, train
from .tuned import META_FILE, PROMPTS_FILE, TunedCLIPSeg

SEARCH_DB = "search.db"
TRIALS_DIR = "trials"
STUDY_NAME = "segprompt-tune"
DEFAULT_TRIALS = 20
STARTUP_TRIALS = 10
LR_RANGE = (1e-5, 5e-3)
WEIGHT_DECAY_RANGE = (1e-5, 1e-2)
#: ``range(1, 11)`` in the reference's configs.
MAX_SEARCHED_DEPTH = 10


def search_space(max_depth: int | None) -> dict[str, Any]:
    """Optuna distributions of the search; ``max_depth=None`` leaves the prompt depth out."""
    from optuna.distributions import FloatDistribution, IntDistribution

    space: dict[str, Any] = {
        "lr": FloatDistribution(*LR_RANGE, log=True),
        "weight_decay": FloatDistribution(*WEIGHT_DECAY_RANGE, log=True),
    }
    if max_depth is not None:
        space["prompt_depth"] = IntDistribution(1, min(MAX_SEARCHED_DEPTH, max_depth))
    return space


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number``: independent streams per trial (adjacent integer seeds
    give TPE's start-up draws nearly equal first values)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _method_params(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if key == "prompt_depth"}


def _objective(result: TrainResult, objective: str) -> float:
    row = result.history[-1] if objective == "last_val_loss" else result.history[result.best_epoch - 1]
    return float(row["val_loss"])


def _copy_checkpoint(source: Path, target: Path) -> None:
    write_files({target / name: (source / name).read_bytes() for name in (PROMPTS_FILE, META_FILE)})


def run_search(
    build: Callable[[dict[str, Any]], TunedCLIPSeg],
    data: RunData,
    out: str | Path,
    config: TrainConfig,
    *,
    max_depth: int | None,
    objective: str,
    seed: int,
    trials: int = DEFAULT_TRIALS,
    progress: ProgressCallback = no_progress,
    resume: bool = False,
) -> dict[str, Any]:
    """Search ``lr``, ``weight_decay`` (and ``prompt_depth``) with ``trials`` training runs, then report the best.

    Args:
        build: a fresh model for a trial's method hyper-parameters (``{"prompt_depth": d}``, or ``{}``
            when the depth is not searched).
        data, config: the run's pairs and settings (``lr`` / ``weight_decay`` are replaced per trial).
        max_depth: the model's deepest prompt depth, or ``None`` when the depth is fixed.
        objective: ``"last_val_loss"`` or ``"selected_val_loss"`` (see the module docstring).
        seed: the TPE sampler's base seed.
        progress: called after each trial as ``progress(done, trials, summary)``.
        resume: continue the search in ``out``.

    Returns:
        The summary written to ``out/summary.json`` (the best trial's, with ``"search"``).

    Raises:
        SegpromptError: ``out`` holds a search (without ``resume``) or nothing to resume,
            a resumed search with other settings, or fewer than one trial.
    """
    import optuna

    out = Path(out)
    db = out / SEARCH_DB
    if trials < 1:
        raise SegpromptError(f"--trials {trials}: must be at least 1")
    if db.exists() and not resume:
        raise SegpromptError(f"{out} already holds a search ({SEARCH_DB}); resume it or choose another output folder")
    if resume and not db.exists():
        raise SegpromptError(f"nothing to resume: {db} does not exist")
    out.mkdir(parents=True, exist_ok=True)
    space = search_space(max_depth)
    settings = {
        "protocol": config.protocol,
        "objective": objective,
        "seed": seed,
        "space": {name: repr(distribution) for name, distribution in space.items()},
        "config": {key: value for key, value in vars(config).items() if key not in ("lr", "weight_decay", "epochs")},
    }
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name=STUDY_NAME, direction="minimize", load_if_exists=True)
    previous = study.user_attrs.get("settings")
    if previous is None:
        study.set_user_attr("settings", settings)
    elif previous != settings:
        what = f"protocol {previous['protocol']!r}" if previous["protocol"] != settings["protocol"] else "other settings"
        raise SegpromptError(f"{db}: the search being resumed used {what}; use another --out or the same options")

    def run_trial(number: int, params: dict[str, Any]) -> float:
        folder = out / TRIALS_DIR / f"{number:03d}"
        trial_config = replace(config, lr=params["lr"], weight_decay=params["weight_decay"])
        resume_trial = (folder / LAST_STATE).exists()
        result = train(build(_method_params(params)), data.train, data.val, folder, trial_config, resume=resume_trial)
        return _objective(result, objective)

    for interrupted in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(interrupted.number, run_trial(interrupted.number, interrupted.params))
    while len(study.get_trials(deepcopy=False)) < trials:
        number = len(study.get_trials(deepcopy=False))
        study.sampler = optuna.samplers.TPESampler(
            seed=trial_seed(seed, number), multivariate=True, n_startup_trials=STARTUP_TRIALS, constant_liar=False
        )
        trial = study.ask(space)
        value = run_trial(trial.number, trial.params)
        study.tell(trial, value)
        progress(trial.number + 1, trials, f"trial {trial.number}: {trial.params} -> {value:.4f} (best {study.best_value:.4f})")

    best = study.best_trial
    folder = out / TRIALS_DIR / f"{best.number:03d}"
    best_config = replace(config, lr=best.params["lr"], weight_decay=best.params["weight_decay"])
    tuned = build(_method_params(best.params))
    result = train(tuned, data.train, data.val, folder, best_config, resume=True)  # finished: returns its record
    _copy_checkpoint(folder, out)
    record = {
        "objective": objective,
        "sampler": {"name": "TPE", "seed": seed, "multivariate": True, "n_startup_trials": STARTUP_TRIALS},
        "space": settings["space"],
        "best_trial": best.number,
        "trials": [
            {"number": t.number, "params": t.params, "value": t.value, "state": t.state.name}
            for t in study.get_trials(deepcopy=False)
        ],
    }
    return report(tuned, data, out, best_config, result, extra={"search": record})

