"""Which hyperparameters matter: a random forest's estimate from the trials that completed.

As optuna's default evaluator does (fANOVA on a random forest), the forest is fitted to the
objective over the completed trials' values; here its mean decrease in impurity, normalised to
sum to one, stands for each hyperparameter's share. Categorical values are coded as integers and
an inactive conditional value (a layer that was not built) as -1: a tree splits on codes as well
as on numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_TRIALS = 4
TREES = 64


def encode(values: list[Any]) -> np.ndarray:
    """One column: numbers as they are, anything else as the index of its sorted text, None as -1.

    >>> encode([1, 2.5, None]).tolist()
    [1.0, 2.5, -1.0]
    >>> encode(["relu", "tanh", "relu"]).tolist()
    [0.0, 1.0, 0.0]
    """
    present = [v for v in values if v is not None]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return np.array([-1.0 if v is None else float(v) for v in values])
    labels = sorted({str(v) for v in present})
    return np.array([-1.0 if v is None else float(labels.index(str(v))) for v in values])


def importances(rows: list[dict[str, Any]], scores: list[float], seed: int = 0) -> dict[str, float]:
    """Each hyperparameter's share of the objective's variation, largest first; empty with fewer
    than MIN_TRIALS trials or no hyperparameter that varies."""
    names = sorted({k for row in rows for k in row if not k.startswith("tuner/")})
    columns = {n: encode([row.get(n) for row in rows]) for n in names}
    columns = {n: c for n, c in columns.items() if len(np.unique(c)) > 1}
    if len(rows) < MIN_TRIALS or not columns or len(set(scores)) < 2:
        return {}
    from sklearn.ensemble import RandomForestRegressor

    x = np.column_stack(list(columns.values()))
    forest = RandomForestRegressor(n_estimators=TREES, random_state=seed, min_samples_leaf=1, n_jobs=1)
    forest.fit(x, np.asarray(scores, dtype=float))
    shares = forest.feature_importances_
    total = float(shares.sum()) or 1.0
    ranked = sorted(zip(columns, shares, strict=True), key=lambda p: -p[1])
    return {name: float(share) / total for name, share in ranked}
