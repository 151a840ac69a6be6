"""How much of a prompt's IoU its interpretable features explain.

IoU is regressed on :data:`~segprompt.pointprompt.features.FEATURES` with a
linear model (standardised features) and a random forest; R² is estimated by
5-fold cross-validation grouped by image, so prompts of one image never sit in
both the training and the test fold (the PointPrompt paper reports R² > 0.5).
Missing feature values (NaN, e.g. the chamfer distance of a prompt without
exclude points) are replaced by the training fold's median.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .features import FEATURES

MIN_ROWS = 20
FOLDS = 5


def _models(seed: int) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "linear": make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), LinearRegression()),
        "random_forest": make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1),
        ),
    }


def regress_iou(rows: Sequence[dict[str, Any]], features: Sequence[str] = FEATURES, seed: int = 0) -> dict[str, Any]:
    """Cross-validated R² and feature importances of IoU ~ features.

    Returns:
        ``{"n": rows, "groups": images, "features": [...], "<model>": {"r2_mean", "r2_std",
        "importance": {feature: value}}}`` where the linear importance is the
        standardised coefficient and the forest's is its impurity importance;
        ``{"skipped": reason}`` with fewer than :data:`MIN_ROWS` rows or two images.
    """
    from sklearn.model_selection import GroupKFold, cross_val_score

    x = np.array([[row[name] for name in features] for row in rows], dtype=np.float64).reshape(len(rows), len(features))
    y = np.array([row["iou"] for row in rows], dtype=np.float64)
    groups = np.array([row["image_id"] for row in rows])
    n_groups = len(set(groups.tolist()))
    if len(rows) < MIN_ROWS or n_groups < 2:
        return {"skipped": f"needs at least {MIN_ROWS} rows from 2 images, got {len(rows)} rows from {n_groups}"}
    folds = GroupKFold(n_splits=min(FOLDS, n_groups))
    out: dict[str, Any] = {"n": len(rows), "groups": n_groups, "features": list(features)}
    for name, model in _models(seed).items():
        scores = cross_val_score(model, x, y, groups=groups, cv=folds, scoring="r2")
        model.fit(x, y)
        final = model[-1]
        values = final.coef_ if name == "linear" else final.feature_importances_
        out[name] = {
            "r2_mean": float(np.mean(scores)),
            "r2_std": float(np.std(scores)),
            "r2_folds": [float(s) for s in scores],
            "importance": {feature: float(v) for feature, v in zip(features, values)},
        }
    return out
