"""Predict a sub-net's accuracy from its config (once-for-all's accuracy predictor, with
scikit-learn regressors instead of a hand-rolled MLP).

Features (:func:`config_features`) encode every slice dim of a config: ``index`` is the
position of its value among the dim's choices scaled to [0, 1] (OFA's encoding of a choice
as its rank), ``value`` is value / capacity, ``onehot`` one column per choice. A few
regressors are fitted; the one with the best Kendall tau in a K-fold cross-validation *on the
fit set* is kept, and the reported metrics are measured on a held-out set that neither the fit
nor the choice of model saw. The kept model is then refitted on all configs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import SliceSpace, SubnetConfig
from ..errors import SearchSpaceError

__all__ = [
    "ENCODINGS",
    "AccuracyPredictor",
    "candidate_models",
    "config_features",
    "fit_predictor",
    "kendall_tau",
]

ENCODINGS = ("index", "value", "onehot")


def config_features(
    space: SliceSpace, cfgs: Sequence[SubnetConfig], *, encoding: str = "index"
) -> np.ndarray:
    """Feature matrix of configs.

    Args:
        space: the grid the configs belong to (fixes the column order: ``space.dims``).
        cfgs: N configs of ``space``.
        encoding: ``index`` (D columns: choice index / (n_choices - 1)), ``value`` (D columns:
            value / capacity) or ``onehot`` (sum of n_choices columns).

    Returns:
        (N, F) float64 array.

    Raises:
        SearchSpaceError: unknown encoding, or a value not among a dim's choices.
    """
    if encoding not in ENCODINGS:
        raise SearchSpaceError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    cols = []
    for dim, choices in space.dims:
        pos = {v: i for i, v in enumerate(choices)}
        try:
            idx = np.fromiter((pos[c[dim]] for c in cfgs), dtype=np.int64, count=len(cfgs))
        except KeyError as e:
            raise SearchSpaceError(
                f"{space.supernet}: a config has {dim}={e.args[0]!r}, not in {list(choices)}"
            ) from None
        if encoding == "index":
            cols.append((idx / max(1, len(choices) - 1))[:, None])
        elif encoding == "value":
            cols.append((np.asarray(choices, float)[idx] / float(choices[-1]))[:, None])
        else:
            cols.append(np.eye(len(choices))[idx])
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(cfgs), 0))


def kendall_tau(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Kendall's tau-b between two vectors (nan if either is constant)."""
    from scipy.stats import kendalltau

    return float(kendalltau(np.asarray(y_true), np.asarray(y_pred)).statistic)


def candidate_models(seed: int = 0) -> dict[str, Callable[[], Any]]:
    """Factories of the regressors :func:`fit_predictor` compares (scikit-learn estimators)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    return {
        # linear in the normalised indices: few parameters, monotone in each width, so it
        # extrapolates sanely from a handful of measured sub-nets (small budgets)
        "ridge": lambda: make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))),
        "ridge_poly2": lambda: make_pipeline(
            PolynomialFeatures(2), StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))
        ),
        "gbr": lambda: GradientBoostingRegressor(
            n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
        ),
        "mlp": lambda: make_pipeline(
            StandardScaler(),
            MLPRegressor(
                hidden_layer_sizes=(64, 64),
                alpha=1e-3,
                learning_rate_init=3e-3,
                max_iter=2000,
                early_stopping=True,  # held-out tau 0.68-0.72 vs 0.59-0.68 without
                validation_fraction=0.15,
                random_state=seed,
            ),
        ),
    }


@dataclass
class AccuracyPredictor:
    """A fitted accuracy regressor over one slice space (pickles).

    Attributes:
        space: the grid its features are computed on.
        model: the fitted scikit-learn estimator (features -> accuracy).
        name: which candidate it is (``ridge_poly2``, ``gbr``, ``mlp``).
        encoding: the :func:`config_features` encoding.
    """

    space: SliceSpace
    model: Any
    name: str
    encoding: str = "index"
    metrics: dict[str, Any] = field(default_factory=dict)

    def predict(self, cfgs: Sequence[SubnetConfig]) -> np.ndarray:
        """(N,) predicted accuracies of N configs."""
        cfgs = list(cfgs)
        if not cfgs:
            return np.zeros(0)
        return np.asarray(
            self.model.predict(config_features(self.space, cfgs, encoding=self.encoding)), float
        )

    def __call__(self, cfgs: Sequence[SubnetConfig]) -> np.ndarray:
        return self.predict(cfgs)


_MIN_FIT = {"mlp": 60}  # configs to fit on below which a candidate is not tried


def _split(n: int, holdout: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_hold = max(1, round(holdout * n))
    return sorted(order[n_hold:]), sorted(order[:n_hold])


def _cv_tau(make: Callable[[], Any], x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    from sklearn.model_selection import KFold

    taus = []
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(x):
        m = make().fit(x[tr], y[tr])
        taus.append(kendall_tau(y[te], m.predict(x[te])))
    return float(np.nanmean(taus)) if not np.all(np.isnan(taus)) else float("-inf")


def _quiet_fit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An MLP that stops at ``max_iter`` warns (ConvergenceWarning) into the user's terminal;
    the candidates are chosen by cross-validated tau, so a poorly converged one loses on
    measured quality, and the warning says nothing the metrics do not."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fn(*args, **kwargs)

    return wrapped


@_quiet_fit
def fit_predictor(
    space: SliceSpace,
    configs: Sequence[SubnetConfig],
    accs: Sequence[float] | Mapping[SubnetConfig, float],
    *,
    holdout: float = 0.25,
    seed: int = 0,
    encoding: str = "index",
    models: Sequence[str] | None = None,
    folds: int = 3,
) -> tuple[AccuracyPredictor, dict[str, Any]]:
    """Fit candidate regressors, keep the best, report held-out metrics, refit on all.

    Args:
        space: the grid.
        configs: N distinct configs with measured accuracy.
        accs: (N,) accuracies aligned with ``configs`` (or a ``{config: acc}`` mapping).
        holdout: fraction of configs held out for the reported metrics (at least 1 config).
        seed: fixes the split, the CV folds and the regressors' seeds.
        encoding: feature encoding (:func:`config_features`).
        models: candidate names (default: all of :func:`candidate_models`).
        folds: K of the cross-validation on the fit set that picks the model.

    Returns:
        ``(predictor, metrics)``; metrics has ``kendall_tau``, ``rmse`` (of the kept model on
        the held-out configs, fitted without them), ``n_train``, ``n_holdout``, ``model``,
        ``holdout_index`` (positions in ``configs`` held out) and ``candidates``
        (``{name: {cv_tau, kendall_tau, rmse}}``, every candidate's figures, for reports;
        the choice used ``cv_tau`` only).

    Raises:
        SearchSpaceError: too few configs, duplicate configs, or mismatched lengths.
    """
    configs = list(configs)
    y = np.asarray(
        [accs[c] for c in configs] if isinstance(accs, Mapping) else list(accs), dtype=float
    )
    if len(y) != len(configs):
        raise SearchSpaceError(f"fit_predictor: {len(configs)} configs but {len(y)} accuracies")
    if len(set(configs)) != len(configs):
        raise SearchSpaceError("fit_predictor: configs must be distinct")
    if not 0.0 < holdout < 1.0:
        raise SearchSpaceError(f"fit_predictor: holdout={holdout} must be in (0, 1)")
    factories = candidate_models(seed)
    names = list(models or factories)
    unknown = [n for n in names if n not in factories]
    if unknown:
        raise SearchSpaceError(f"unknown model(s) {unknown}; allowed: {list(factories)}")
    tr, te = _split(len(configs), holdout, seed)
    if len(tr) < 2 * folds:
        raise SearchSpaceError(
            f"fit_predictor: {len(configs)} configs leave {len(tr)} to fit; measure at least "
            f"{int(np.ceil(2 * folds / (1 - holdout))) + 1}"
        )
    x = config_features(space, configs, encoding=encoding)
    cands: dict[str, dict[str, float]] = {}
    # the MLP's early stopping holds out 15% of each CV fold: too few configs to fit on
    names = [n for n in names if len(tr) >= _MIN_FIT.get(n, 0)] or names[:1]
    for name in names:
        m = factories[name]().fit(x[tr], y[tr])
        p = m.predict(x[te])
        cands[name] = {
            "cv_tau": _cv_tau(factories[name], x[tr], y[tr], folds, seed),
            "kendall_tau": kendall_tau(y[te], p),
            "rmse": float(np.sqrt(np.mean((p - y[te]) ** 2))),
        }
    best = max(names, key=lambda n: cands[n]["cv_tau"])
    metrics: dict[str, Any] = {
        "kendall_tau": cands[best]["kendall_tau"],
        "rmse": cands[best]["rmse"],
        "n_train": len(tr),
        "n_holdout": len(te),
        "model": best,
        "encoding": encoding,
        "holdout_index": te,
        "candidates": cands,
    }
    final = factories[best]().fit(x, y)
    return AccuracyPredictor(space, final, best, encoding, dict(metrics)), metrics
