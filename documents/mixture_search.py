"""Propose mixture weights from proxy runs, in the spirit of RegMix (Liu et al. 2024) and Data
Mixing Laws (Ye et al. 2024): fit a regression from mixture weights to a metric measured on small
proxy models, then search the simplex for the weights the fit predicts best, under the same
constraints a mixture has (weights sum to 1, each source within its epoch cap for the token budget,
synthetic sources under their cap).

Input: a CSV with one column per source (its weight in that proxy run) and one metric column.
The fit is a ridge regression on the weights and their pairwise products (a quadratic response
surface; RegMix uses gradient boosting on hundreds of runs, but a few dozen runs is what a team
usually has, and the quadratic form extrapolates more gently). Like RegMix, the proposal is the
mean of the best ``top_k`` feasible candidates, not the single best one (the fit is noisy); the
constraints are linear, so the mean of feasible weights is feasible.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Proposal:
    sources: list[str]
    weights: dict[str, float]
    predicted: float
    best_run: dict[str, float]  # the best proxy run's weights and metric
    cv_r2: float  # leave-one-out R² of the fit
    runs: int
    feasible_candidates: int
    bounds: dict[str, float] = field(default_factory=dict)  # each source's largest feasible weight


def read_runs(path: str | Path, sources: list[str], metric: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no runs")
    missing = [c for c in [*sources, metric] if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (need one per source {sources} and the metric {metric!r})")
    w = np.array([[float(r[s]) for s in sources] for r in rows])
    y = np.array([float(r[metric]) for r in rows])
    sums = w.sum(axis=1)
    if np.any(np.abs(sums - 1) > 1e-3):
        raise ValueError(f"{path}: every run's weights must sum to 1 (row {int(np.argmax(np.abs(sums - 1))) + 2} sums to {sums.max():.4f})")
    return w, y


def _features(w: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(w.shape[1])
    return np.hstack([w, w[:, i] * w[:, j]])


def propose(
    w: np.ndarray,
    y: np.ndarray,
    sources: list[str],
    bounds: dict[str, float],
    synthetic: list[str],
    synthetic_cap: float,
    lower_is_better: bool = True,
    samples: int = 200_000,
    top_k: int = 100,
    seed: int = 0,
) -> Proposal:
    """``bounds``: each source's largest weight (epoch cap × available tokens / budget, ≤ 1)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import LeaveOneOut, cross_val_predict

    x = _features(w)
    model = RidgeCV(alphas=np.logspace(-6, 2, 30))
    pred_cv = cross_val_predict(model, x, y, cv=LeaveOneOut()) if len(y) >= 5 else y
    cv_r2 = 1 - float(np.sum((y - pred_cv) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
    model.fit(x, y)
    rng = np.random.default_rng(seed)
    cand = np.vstack([rng.dirichlet(np.ones(len(sources)), samples), w])
    cap = np.array([bounds.get(s, 1.0) for s in sources])
    ok = np.all(cand <= cap + 1e-12, axis=1)
    if synthetic:
        syn = np.array([s in synthetic for s in sources])
        ok &= cand[:, syn].sum(axis=1) <= synthetic_cap + 1e-12
    cand = cand[ok]
    if not len(cand):
        raise ValueError("no weights satisfy the epoch and synthetic caps: raise the caps or lower the budget")
    score = model.predict(_features(cand))
    order = np.argsort(score if lower_is_better else -score)[:top_k]
    best = cand[order].mean(axis=0)
    i_best = int(np.argmin(y) if lower_is_better else np.argmax(y))
    return Proposal(
        sources=sources,
        weights={s: float(v) for s, v in zip(sources, best)},
        predicted=float(model.predict(_features(best[None]))[0]),
        best_run={**{s: float(v) for s, v in zip(sources, w[i_best])}, "metric": float(y[i_best])},
        cv_r2=cv_r2,
        runs=len(y),
        feasible_candidates=int(len(cand)),
        bounds={s: float(c) for s, c in zip(sources, cap)},
    )
