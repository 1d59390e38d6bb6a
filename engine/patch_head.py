"""Supervised patch classifier for segmentation models (trained on the label masks).

A one-class k-NN map flags everything unusual -- a shifted crumb as much as a crack -- and its
blobs are wider than thin defects, which caps mask IoU. When masks are available we learn, per grid
cell, "background vs. each anomaly label" with a multinomial logistic model on
[standardised descriptor, k-NN distance, smoothed k-NN distance]. Including the k-NN distances lets
the model keep the one-class evidence while learning what the labelled defects look like; being
linear, it cannot memorise a few dozen images. It yields:
  * an anomaly logit per cell, log(sum_l p_l / p_background), smoothed and upsampled for the mask;
  * the most likely label per cell, which names each connected region (multi-label projects).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from .groups import grouped_folds
from .options import FitOptions
from .scoring import smooth
from .segmentation import mask_to_grid
from .threshold import normal_score_stats

_L2 = 1e-3  # on standardised inputs with a mean (class-balanced) loss
# A label with no training cell gets this fixed logit offset: its probability is ~1e-13 of the
# others', so it is never predicted, and the weights stay well defined for the optimiser.
_ABSENT_LOGIT = -30.0
# Background cells kept per image: about this many background rows in all, at least
# _MIN_BACKGROUND_PER_IMAGE from each image (bounds the fit's cost on large training sets).
_BACKGROUND_ROWS = 8000
_MIN_BACKGROUND_PER_IMAGE = 32

# The patch classifier's training rows of each image that has some, by image index: (inputs, targets).
Rows = dict[int, tuple[np.ndarray, np.ndarray]]


def patch_inputs(feats: torch.Tensor, dist_raw: torch.Tensor, dist_smooth: torch.Tensor) -> np.ndarray:
    """(B, D, gh, gw), (B, gh, gw) x2 -> (B*gh*gw, D + 2) float64 rows in (b, y, x) order."""
    b, d, gh, gw = feats.shape
    x = feats.permute(0, 2, 3, 1).reshape(-1, d)
    extra = torch.stack([dist_raw.reshape(-1), dist_smooth.reshape(-1)], 1)
    return torch.cat([x, extra], 1).double().numpy()


class PatchClassifier:
    """Standardise -> multinomial logits over (background, label_1, ..., label_L)."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)  # (L + 1, F)
        self.intercept = np.asarray(intercept, dtype=np.float64)  # (L + 1,)
        self._mean_t, self._scale_t = torch.from_numpy(self.mean), torch.from_numpy(self.scale)
        self._coef_t, self._intercept_t = torch.from_numpy(self.coef), torch.from_numpy(self.intercept)
        # Image score = (max of the smoothed map - centre) / scale: the model's own normal scale.
        self.score_centre, self.score_scale = 0.0, 1.0

    def image_score(self, smoothed_max: np.ndarray) -> np.ndarray:
        """Image scores from the maxima of smoothed anomaly-logit maps, in units of this model's own
        training-normal scores (see ``normal_score_stats``)."""
        return (np.asarray(smoothed_max, dtype=np.float64) - self.score_centre) / self.score_scale

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """Serialised form (see state.py)."""
        arrays = {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}
        config = {"labels": int(self.coef.shape[0] - 1), "score_centre": self.score_centre,
                  "score_scale": self.score_scale}
        return config, {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> PatchClassifier:
        """Inverse of ``state``."""
        clf = cls(*(tensors[k].numpy() for k in ("mean", "scale", "coef", "intercept")))
        clf.score_centre = float(config.get("score_centre", 0.0))
        clf.score_scale = float(config.get("score_scale", 1.0))
        return clf

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, L + 1) class logits.

        Computed with torch, not numpy: numpy's OpenBLAS threads keep spinning after a call and
        then fight torch's OpenMP threads for the 2 cores (it doubled predict time here).
        """
        z = (torch.from_numpy(np.asarray(x, dtype=np.float64)) - self._mean_t) / self._scale_t
        return (z @ self._coef_t.T + self._intercept_t).numpy()

    def anomaly_logit(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, F) -> (log-odds of any anomaly label vs background, best label index 0..L-1)."""
        z = torch.from_numpy(self.logits(x))
        za = z[:, 1:]
        return (torch.logsumexp(za, 1) - z[:, 0]).numpy(), za.argmax(1).numpy()

    @classmethod
    def fit(cls, x: np.ndarray, t: np.ndarray, n_labels: int, max_iter: int = 100) -> PatchClassifier:
        """Fit on rows x with targets t in {0 (background), 1..n_labels}.

        Class-balanced softmax regression with an L2 penalty, solved with SciPy's L-BFGS-B for at
        most ``max_iter`` iterations: deterministic, single-threaded numpy (robust to a busy
        machine), and far faster here than sklearn's multinomial solver.
        """
        from scipy.optimize import minimize

        x = np.asarray(x, dtype=np.float64)
        t = np.asarray(t, dtype=np.int64)
        mean = x.mean(0)
        scale = x.std(0)
        scale[scale < 1e-8] = 1.0
        z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
        k, f = n_labels + 1, z.shape[1]
        counts = np.bincount(t, minlength=k).astype(np.float64)
        present = counts > 0
        cw = np.where(present, counts.sum() / (present.sum() * np.maximum(counts, 1)), 0.0)
        sw = cw[t] / cw[t].sum()  # per-row weights summing to 1
        onehot = np.zeros((len(t), k))
        onehot[np.arange(len(t)), t] = 1.0
        absent = np.where(present, 0.0, _ABSENT_LOGIT)
        reg = np.ones(f)
        reg[-1] = 0.0  # no penalty on the bias

        def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
            w = p.reshape(k, f)
            logits = z @ w.T + absent
            logits -= logits.max(1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
            loss = -(sw * (onehot * logp).sum(1)).sum() + _L2 * (w * w * reg).sum()
            g = (np.exp(logp) - onehot) * sw[:, None]
            grad = g.T @ z + 2 * _L2 * w * reg
            return float(loss), grad.ravel()

        # Single-threaded BLAS: these matrices are small, and multi-threaded BLAS on a busy 2-core
        # machine is 10x slower (spin-waiting) -- and thread count must not change the result.
        with threadpool_limits(1):
            res = minimize(objective, np.zeros(k * f), jac=True, method="L-BFGS-B",
                           options={"maxiter": int(max_iter), "gtol": 1e-8})
        w = res.x.reshape(k, f)
        return cls(mean, scale, w[:, :-1].copy(), w[:, -1] + absent)


def training_rows(cv_idx: np.ndarray, y: np.ndarray, masks: Sequence[np.ndarray | None],
                  std_feats: Callable[[int], torch.Tensor], raw_maps: dict[int, torch.Tensor],
                  oof_maps: dict[int, torch.Tensor], gh: int, gw: int, n_labels: int, opts: FitOptions,
                  rng: np.random.Generator) -> Rows:
    """Per image: (inputs, targets) rows for the patch classifier.

    Normal images: all cells background. Masked anomalies: a cell is label l if >= 50% covered by
    l, background if untouched, and left out if partly covered (ambiguous borders). Unmasked
    anomalies contribute nothing (we do not know where the defect is). Background cells are
    subsampled per image (seeded) to bound the training set.
    """
    n_imgs = len(cv_idx)
    neg_cap = max(_MIN_BACKGROUND_PER_IMAGE, _BACKGROUND_ROWS // max(n_imgs, 1))
    rows: Rows = {}
    for i in cv_idx.tolist():
        if y[i] == 1 and masks[i] is None:
            continue
        x = patch_inputs(std_feats(i)[None], raw_maps[i][None], oof_maps[i][None])
        if masks[i] is None:
            t = np.zeros(gh * gw, dtype=np.int64)
        else:
            cov = mask_to_grid(masks[i], gh, gw, n_labels).reshape(n_labels + 1, -1)
            lab = cov[1:].argmax(0)
            best = cov[1:].max(0)
            # Cells >= 50% covered are positives; a defect thinner than half a cell everywhere
            # still contributes its best-covered cells.
            cut = min(0.5, 0.5 * float(best.max())) if best.max() > 0 else 0.5
            t = np.where(best >= cut, lab + 1, np.where(cov[0] >= 0.999, 0, -1))
        bg = np.flatnonzero(t == 0)
        if len(bg) > neg_cap:
            bg = np.sort(rng.choice(bg, neg_cap, replace=False))
        sel = np.concatenate([bg, np.flatnonzero(t > 0)])
        rows[i] = (x[sel], t[sel])
    return rows


def stack_rows(rows: Rows, idx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the images ``idx`` (those that have some), inputs and targets each in one array."""
    xs = [rows[i][0] for i in idx if i in rows]
    ts = [rows[i][1] for i in idx if i in rows]
    return np.concatenate(xs), np.concatenate(ts)


def image_score_map(clf: PatchClassifier, x: np.ndarray, gh: int, gw: int, sigma: float) -> torch.Tensor:
    """(gh, gw) smoothed anomaly-logit map of one image's patch inputs."""
    logit, _ = clf.anomaly_logit(x)
    return smooth(torch.from_numpy(logit.astype(np.float32)).view(1, gh, gw), sigma)[0]


def out_of_fold_maps(cv_idx: np.ndarray, y: np.ndarray, has_mask: np.ndarray, groups: np.ndarray, rows: Rows,
                     inputs_of: Callable[[int], np.ndarray], n_labels: int, opts: FitOptions, gh: int, gw: int
                     ) -> tuple[dict[int, torch.Tensor], dict[int, tuple[float, float]]]:
    """Out-of-fold smoothed anomaly-logit maps of every CV image (stratified K-fold over whole
    near-duplicate ``groups``, indexed by image), and for each image the in-sample normal-score
    statistics (see ``normal_score_stats``) of the fold model that scored it, so out-of-fold scores
    can be put on each model's own scale."""
    ids = np.asarray(cv_idx)
    strata = y[ids] * 2 + has_mask[ids]
    n_min = min(int((strata == s).sum()) for s in np.unique(strata))
    k = max(2, min(opts.cv_folds, 3, n_min)) if n_min >= 2 else 2  # 3 folds: cost vs. OOF quality
    if n_min < 2:
        strata = y[ids]
    out: dict[int, torch.Tensor] = {}
    calib: dict[int, tuple[float, float]] = {}
    for tr, te in grouped_folds(strata, groups[ids], k, opts.seed):
        tr_ids = [int(i) for i in ids[tr] if int(i) in rows]
        x, t = stack_rows(rows, tr_ids)
        if len(np.unique(t[t >= 0])) < 2:
            clf = None
        else:
            clf = PatchClassifier.fit(x[t >= 0], t[t >= 0], n_labels)
        stats = (0.0, 1.0)
        if clf is not None:
            own = [float(image_score_map(clf, inputs_of(int(i)), gh, gw, opts.map_sigma).max())
                   for i in ids[tr] if y[int(i)] == 0]
            stats = normal_score_stats(np.array(own))
        for i in ids[te].tolist():
            calib[i] = stats
            if clf is None:
                out[i] = torch.zeros(gh, gw)
                continue
            out[i] = image_score_map(clf, inputs_of(i), gh, gw, opts.map_sigma)
    return out, calib

