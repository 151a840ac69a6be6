"""How much of a prompt's IoU its interpretable features explain.

IoU is regressed on :data:`~segprompt.pointprompt.features.FEATURES` with a
linear model (standardised features, ridge penalty chosen by inner
cross-validation, because there are about as many features as images in a
small run) and a random forest. R² is that of the out-of-fold predictions of
5-fold cross-validation grouped by image (every prompt predicted by a model
that saw no prompt of its image), pooled over the folds: per-fold R² is
meaningless when a fold holds one or two images whose IoUs barely vary. The
PointPrompt paper reports R² > 0.5.
Missing feature values (NaN, e.g. the chamfer distance of a prompt without
exclude points) are replaced by the training fold's median.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .features import FEATURES

MIN_ROWS = 20
#: Fewer images cannot support a grouped cross-validated R²: each fold's model sees a handful of images, and
#: a 4-image run gave R² = -1.37, which says nothing about the features.
MIN_IMAGES = 10
FOLDS = 5


def _models(seed: int) -> dict[str, Any]:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "linear": make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))
        ),
        "random_forest": make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1),
        ),
    }


def regress_iou(rows: Sequence[dict[str, Any]], features: Sequence[str] = FEATURES, seed: int = 0) -> dict[str, Any]:
    """Cross-validated R² and feature importances of IoU ~ features.

    Returns:
        ``{"n": rows, "groups": images, "folds": k, "features": [...], "<model>": {"r2",
        "importance": {feature: value}}}`` where the linear importance is the
        standardised coefficient and the forest's is its impurity importance;
        ``{"skipped": reason}`` with fewer than :data:`MIN_ROWS` rows or :data:`MIN_IMAGES` images.
    """
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    x = np.array([[row[name] for name in features] for row in rows], dtype=np.float64).reshape(len(rows), len(features))
    y = np.array([row["iou"] for row in rows], dtype=np.float64)
    groups = np.array([row["image_id"] for row in rows])
    n_groups = len(set(groups.tolist()))
    if len(rows) < MIN_ROWS or n_groups < MIN_IMAGES:
        return {
            "skipped": f"an R² cross-validated over images needs at least {MIN_ROWS} rows from {MIN_IMAGES} images, "
            f"got {len(rows)} rows from {n_groups}"
        }
    folds = GroupKFold(n_splits=min(FOLDS, n_groups))
    out: dict[str, Any] = {"n": len(rows), "groups": n_groups, "folds": folds.n_splits, "features": list(features)}
    for name, model in _models(seed).items():
        predicted = cross_val_predict(model, x, y, groups=groups, cv=folds)
        model.fit(x, y)
        final = model[-1]
        values = final.coef_ if name == "linear" else final.feature_importances_
        out[name] = {
            "r2": float(r2_score(y, predicted)),
            "importance": {feature: float(v) for feature, v in zip(features, values)},
        }
    return out
