"""Combine several nets' P(FAKE) for each face into one probability.

Every combiner maps an array of shape (n_faces, n_models) to shape (n_faces,).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import UsageError

EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Combiner:
    """How member probabilities become one: `mean`, `weighted`, `logit_mean` or `stacked`.

    `weights` (one per member) serve `weighted` and, with `intercept`, `stacked`: a logistic
    regression on the members' logits, fitted on validation predictions by `fit_stacked`.
    """

    kind: str = "mean"
    weights: tuple[float, ...] = field(default_factory=tuple)
    intercept: float = 0.0

    KINDS = ("mean", "weighted", "logit_mean", "stacked")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise UsageError(f"unknown combiner {self.kind!r}; choose one of: {', '.join(self.KINDS)}")
        if self.kind in ("weighted", "stacked") and not self.weights:
            raise UsageError(f"the {self.kind} combiner needs one weight per member")
        if self.kind == "weighted" and (min(self.weights) < 0 or sum(self.weights) <= 0):
            raise UsageError(f"weighted combiner: weights must be non-negative with a positive sum, got {self.weights}")

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2:
            raise ValueError(f"expected (n_faces, n_models) probabilities, got shape {probs.shape}")
        if self.kind in ("weighted", "stacked") and probs.shape[1] != len(self.weights):
            raise UsageError(f"{self.kind} combiner has {len(self.weights)} weights for {probs.shape[1]} members")
        if self.kind == "mean":
            return probs.mean(axis=1)
        if self.kind == "weighted":
            weights = np.asarray(self.weights, dtype=np.float64)
            return probs @ (weights / weights.sum())
        if self.kind == "logit_mean":
            return _sigmoid(_logit(probs).mean(axis=1))
        return _sigmoid(_logit(probs) @ np.asarray(self.weights) + self.intercept)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "weights": list(self.weights), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict) -> "Combiner":
        return cls(data.get("kind", "mean"), tuple(data.get("weights", ())), float(data.get("intercept", 0.0)))


STACK_WEIGHTS = ("non-negative", "any")  # how a stacked combiner's member weights may be fitted


def fit_stacked(probs: np.ndarray, labels: np.ndarray, C: float = 1.0, weights: str = "any") -> Combiner:
    """A `stacked` combiner: L2-penalised logistic regression on member logits, labels 1 = FAKE. `weights`
    "non-negative" keeps every member's weight >= 0 (Breiman, "Stacked regressions", 1996: a negative weight
    fits a correlation between members of the validation set, which other fakes need not share); "any" is
    sklearn's unconstrained fit."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise UsageError("a stacked combiner needs validation predictions of both classes")
    if weights not in STACK_WEIGHTS:
        raise UsageError(f"unknown stack weights {weights!r}; choose one of: {', '.join(STACK_WEIGHTS)}")
    logits = _logit(np.asarray(probs, dtype=np.float64))
    if weights == "non-negative":
        return _fit_non_negative(logits, labels.astype(np.float64), C)
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=1000).fit(logits, labels)
    return Combiner("stacked", tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]))


def _fit_non_negative(logits: np.ndarray, labels: np.ndarray, C: float) -> Combiner:
    """sklearn's objective (0.5 |w|^2 + C * log loss, the intercept unpenalised), minimised with w >= 0 (L-BFGS-B)."""
    from scipy.optimize import minimize

    n_members = logits.shape[1]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weights, intercept = theta[:n_members], theta[n_members]
        z = logits @ weights + intercept
        residual = _sigmoid(z) - labels
        loss = 0.5 * weights @ weights + C * float(np.sum(np.logaddexp(0.0, z) - labels * z))
        return loss, np.append(weights + C * (logits.T @ residual), C * residual.sum())

    fit = minimize(objective, np.zeros(n_members + 1), jac=True, method="L-BFGS-B",
                   bounds=[(0.0, None)] * n_members + [(None, None)])
    if not fit.success:
        raise UsageError(f"the non-negative stacked combiner did not converge: {fit.message}")
    return Combiner("stacked", tuple(float(w) for w in fit.x[:n_members]), float(fit.x[n_members]))
