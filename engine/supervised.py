"""Supervised image-level component: a regularised logistic head on pooled patch descriptors.

One-class scoring misses defects that look locally "normal" (e.g. a wrong overall shape), while a
supervised head misses defect types absent from training. Training therefore fits both and picks or
combines them by cross-validation (see training.py). The head is a linear model on
[mean-pooled, max-pooled] standardised descriptors -- few parameters, so it does not overfit a few
dozen images -- with its L2 strength chosen by inner cross-validation.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import torch
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

_CS = (0.003, 0.03, 0.3)


class LinearHead:
    """Standardise -> linear logit. Stored as plain arrays so artifacts need no pickle."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """Serialised form (see state.py); the intercept is a float and round-trips exactly in JSON."""
        tensors = {"mean": torch.from_numpy(self.mean.copy()), "scale": torch.from_numpy(self.scale.copy()),
                   "coef": torch.from_numpy(self.coef.copy())}
        return {"intercept": self.intercept}, tensors

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> LinearHead:
        """Inverse of ``state``."""
        return cls(tensors["mean"].numpy(), tensors["scale"].numpy(), tensors["coef"].numpy(),
                   float(config["intercept"]))

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Decision value (log-odds of 'anomaly') for rows of x (torch math: see patch_head.py)."""
        x_t = torch.from_numpy(np.asarray(x, dtype=np.float64))
        z = (x_t - torch.from_numpy(self.mean)) / torch.from_numpy(self.scale)
        return (z @ torch.from_numpy(self.coef) + self.intercept).numpy()

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, seed: int, inner_folds: int = 3) -> LinearHead:
        """Fit with C picked by inner stratified CV (AUROC); deterministic (lbfgs, fixed folds).

        BLAS is limited to one thread: the problem is tiny, multi-threaded BLAS on a busy machine is
        an order of magnitude slower, and the result must not depend on the thread count."""
        with threadpool_limits(1):
            return cls._fit(x, y, seed, inner_folds)

    @classmethod
    def _fit(cls, x: np.ndarray, y: np.ndarray, seed: int, inner_folds: int) -> LinearHead:
        from sklearn.metrics import roc_auc_score
        from sklearn.model_selection import StratifiedKFold

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        mean = x.mean(0)
        scale = x.std(0)
        scale[scale < 1e-8] = 1.0
        z = (x - mean) / scale
        n_min = int(min((y == 0).sum(), (y == 1).sum()))
        best_c = _CS[1]
        if n_min >= inner_folds:
            skf = StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
            best = -1.0
            for c in _CS:
                oof = np.zeros(len(y))
                for tr, te in skf.split(z, y):
                    m = _lr(c).fit(z[tr], y[tr])
                    oof[te] = m.decision_function(z[te])
                auc = roc_auc_score(y, oof)
                if auc > best + 1e-9:
                    best, best_c = auc, c
        m = _lr(best_c).fit(z, y)
        return cls(mean, scale, m.coef_[0], float(m.intercept_[0]))


def _lr(c: float) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    warnings.filterwarnings("ignore", message=".*lbfgs failed to converge.*")
    return LogisticRegression(C=c, max_iter=500, class_weight="balanced")
