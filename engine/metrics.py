"""Evaluation metrics, shared by training (test split) and by the service.

Conventions (documented because LFV leaves them implicit):
* Anomaly is the positive class.
* 0/0: if the items contain no anomalies and none are predicted, precision = recall = F1 = 1 (nothing
  to find, nothing wrongly flagged); otherwise any undefined ratio is 0.
* AUROC needs both classes; None otherwise.
* Segmentation (pixel level, per anomaly label): precision/recall/F1 over all pixels of all evaluated
  images that carry a ground-truth mask or are normal; IoU is LFV's "average IoU": per image
  intersection / union for that label, averaged over images whose ground truth contains the label.
  mean_iou is the mean of the per-label IoUs.
* pixel_auroc: how well the anomaly map ranks defect pixels above the rest, over every pixel of the
  evaluated images that carry a mask or are normal (defect = any mask pixel in a label colour; a
  normal image contributes only non-defect pixels). It measures the map independently of any pixel
  threshold, for classification models as well (their items may still carry masks).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Metrics:
    """Classification metrics (+ per-label segmentation metrics for segmentation models)."""

    precision: float
    recall: float
    f1: float
    auroc: float | None
    per_image: list[dict] = field(default_factory=list)
    per_label: dict[str, dict] = field(default_factory=dict)
    mean_iou: float | None = None
    pixel_auroc: float | None = None

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return asdict(self)


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with the 0/0 conventions in the module docstring."""
    if tp + fp + fn == 0:
        return 1.0, 1.0, 1.0
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    # 2tp / (2tp + fp + fn) is the harmonic mean of p and r in one correctly rounded division: two
    # confusions with the same F1 give the same float, so F1s compare equal where they are equal
    # (training breaks exact ties between candidates on it).
    f = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return float(p), float(r), float(f)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return None
    # Mann-Whitney U via ranks (average ranks for ties).
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def classification_metrics(names: list[str], labels: list[str], preds: list) -> Metrics:
    """Image-level metrics from ground-truth labels and ``Prediction`` objects."""
    y = np.array([lab == "anomaly" for lab in labels], dtype=bool)
    yhat = np.array([p.is_anomalous for p in preds], dtype=bool)
    tp = int((y & yhat).sum())
    fp = int((~y & yhat).sum())
    fn = int((y & ~yhat).sum())
    p, r, f = prf(tp, fp, fn)
    per_image = []
    for name, lab, pr in zip(names, labels, preds, strict=True):
        pl = "anomaly" if pr.is_anomalous else "normal"
        per_image.append(
            {
                "name": name,
                "label": lab,
                "predicted_label": pl,
                "is_anomalous": bool(pr.is_anomalous),
                "confidence": float(pr.confidence),
                "score": float(pr.score),
                "correct": pl == lab,
            }
        )
    return Metrics(p, r, f, auroc(y, np.array([pr.score for pr in preds])), per_image)


class SegmentationAccumulator:
    """Accumulates pixel-level counts per label over images, then yields per_label and mean_iou."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = list(labels)
        n = len(labels)
        self.tp = np.zeros(n, dtype=np.int64)
        self.fp = np.zeros(n, dtype=np.int64)
        self.fn = np.zeros(n, dtype=np.int64)
        self.ious: list[list[float]] = [[] for _ in labels]
        self.images_found = np.zeros(n, dtype=np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """gt, pred: (H, W) label index maps (0 = background, i+1 = labels[i])."""
        for i in range(len(self.labels)):
            g = gt == i + 1
            p = pred == i + 1
            inter = int(np.count_nonzero(g & p))
            gs, ps = int(np.count_nonzero(g)), int(np.count_nonzero(p))
            self.tp[i] += inter
            self.fp[i] += ps - inter
            self.fn[i] += gs - inter
            if ps:
                self.images_found[i] += 1
            if gs:
                self.ious[i].append(inter / (gs + ps - inter))

    def result(self) -> tuple[dict[str, dict], float | None]:
        """(per_label, mean_iou). IoU is None for a label never present in the ground truth."""
        per_label: dict[str, dict] = {}
        ious = []
        for i, lab in enumerate(self.labels):
            p, r, f = prf(int(self.tp[i]), int(self.fp[i]), int(self.fn[i]))
            iou = float(np.mean(self.ious[i])) if self.ious[i] else None
            if iou is not None:
                ious.append(iou)
            per_label[lab] = {
                "precision": p,
                "recall": r,
                "f1": f,
                "iou": iou,
                "images_with_label_found": int(self.images_found[i]),
                "images_with_label": len(self.ious[i]),
            }
        return per_label, (float(np.mean(ious)) if ious else None)


# Anomaly maps lie in [0, 1]; binning them this finely changes pixel AUROC by less than 1e-4 while
# keeping its cost and memory flat however many pixels are evaluated (millions per test set).
_PIXEL_BINS = 1 << 14


class PixelAurocAccumulator:
    """Pixel AUROC over many images from per-bin counts of defect and other pixels."""

    def __init__(self) -> None:
        self.pos = np.zeros(_PIXEL_BINS, dtype=np.int64)
        self.neg = np.zeros(_PIXEL_BINS, dtype=np.int64)

    def add(self, anomaly_map: np.ndarray, defect: np.ndarray) -> None:
        """anomaly_map: (H, W) in [0, 1]; defect: (H, W) bool ground truth."""
        bins = np.clip((np.asarray(anomaly_map, dtype=np.float64) * (_PIXEL_BINS - 1)).round(), 0,
                       _PIXEL_BINS - 1).astype(np.int64).ravel()
        d = np.asarray(defect, dtype=bool).ravel()
        self.pos += np.bincount(bins[d], minlength=_PIXEL_BINS)
        self.neg += np.bincount(bins[~d], minlength=_PIXEL_BINS)

    def result(self) -> float | None:
        """AUROC (ties within a bin count half); None without both kinds of pixel."""
        n_pos, n_neg = int(self.pos.sum()), int(self.neg.sum())
        if n_pos == 0 or n_neg == 0:
            return None
        below = np.cumsum(self.neg) - self.neg  # negatives in lower bins
        wins = float((self.pos * below).sum()) + 0.5 * float((self.pos * self.neg).sum())
        return wins / (n_pos * n_neg)
