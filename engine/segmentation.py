"""Segmentation: anomaly map -> labelled regions -> RGB mask and per-label area fractions.

The mask is the set of pixels whose normalised anomaly map is >= 0.5 (the pixel threshold was chosen
on the training masks, see training.py), painted only when the image itself is predicted anomalous
(a normal verdict with painted defects would contradict itself). Each connected region gets one
label: a vote of its pixels for their grid cell's most likely label under the patch classifier
(patch_head.py), weighted by anomaly strength -- with a single label this is trivial.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .groups import grouped_folds
from .images import BACKGROUND_HEX, parse_hex
from .options import FitOptions

# If an image is judged anomalous but no pixel reaches the pixel threshold (e.g. the supervised
# head fired), paint the strongest region: pixels within this fraction of the map's maximum.
FALLBACK_FRACTION = 0.9


def label_regions(
    map01: np.ndarray, is_anomalous: bool, cell_labels: np.ndarray | None
) -> np.ndarray:
    """(H, W) label index map: 0 = background, i+1 = label i.

    cell_labels: (gh, gw) int label index (0-based) per grid cell, or None for a single label.
    """
    h, w = map01.shape
    out = np.zeros((h, w), dtype=np.uint8)
    if not is_anomalous:
        return out
    binary = map01 >= 0.5
    if not binary.any():
        binary = map01 >= FALLBACK_FRACTION * float(map01.max())
    if cell_labels is None:
        out[binary] = 1
        return out
    gh, gw = cell_labels.shape
    comps, n = ndimage.label(binary)
    if n == 0:
        return out
    # Vote per component: each pixel votes for its cell's label with weight = map value.
    rows = np.minimum((np.arange(h) * gh) // h, gh - 1)
    cols = np.minimum((np.arange(w) * gw) // w, gw - 1)
    pix_label = cell_labels[rows[:, None], cols[None, :]]
    n_labels = int(cell_labels.max()) + 1
    sel = comps > 0
    votes = np.zeros((n + 1, n_labels), dtype=np.float64)
    np.add.at(votes, (comps[sel], pix_label[sel]), map01[sel].astype(np.float64))
    comp_label = votes.argmax(1).astype(np.uint8) + 1
    comp_label[0] = 0
    return comp_label[comps]


def render(index_map: np.ndarray, labels: list[str],
           colours: list[str]) -> tuple[np.ndarray, list[tuple[str, str, float]]]:
    """Label index map -> (RGB mask with white background, [(name, colour, fraction), ...]).

    Background comes first; labels follow in model order and only if present; fractions are
    pixel counts / image area so they sum to 1.
    """
    h, w = index_map.shape
    mask = np.full((h, w, 3), 255, dtype=np.uint8)
    total = h * w
    found: list[tuple[str, str, float]] = []
    painted = 0
    if index_map.any():  # normal verdicts (the common case) skip all per-label work
        for i, (name, colour) in enumerate(zip(labels, colours, strict=True)):
            sel = index_map == i + 1
            n = int(np.count_nonzero(sel))
            if n:
                mask[sel] = parse_hex(colour, "label colour")
                found.append((name, colour, n / total))
                painted += n
    return mask, [("background", BACKGROUND_HEX, (total - painted) / total)] + found


def mask_to_grid(mask: np.ndarray, gh: int, gw: int, n_labels: int) -> np.ndarray:
    """(H, W) label index map -> (n_labels + 1, gh, gw) per-cell label coverage fractions."""
    t = torch.from_numpy(mask.astype(np.int64))
    onehot = torch.nn.functional.one_hot(t, n_labels + 1).permute(2, 0, 1).float().unsqueeze(0)
    return torch.nn.functional.adaptive_avg_pool2d(onehot, (gh, gw))[0].numpy()


def resize_mask(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of a label index map."""
    rows = np.minimum((np.arange(h) * mask.shape[0]) // h, mask.shape[0] - 1)
    cols = np.minimum((np.arange(w) * mask.shape[1]) // w, mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def best_pixel_threshold(maps: list[np.ndarray], gts: list[np.ndarray], candidates: np.ndarray) -> tuple[float, float]:
    """Threshold on raw distance maximising mean per-image IoU of (map >= t) vs (gt > 0)."""
    best_t, best = float(candidates[0]), -1.0
    for t in candidates:
        ious = []
        for m, g in zip(maps, gts, strict=True):
            p = m >= t
            inter = np.count_nonzero(p & g)
            union = np.count_nonzero(p | g)
            ious.append(1.0 if union == 0 else inter / union)
        v = float(np.mean(ious))
        if v > best + 1e-12:
            best, best_t = v, float(t)
    return best_t, best


def cross_validated_iou(masked: Sequence[int], groups: np.ndarray, maps: dict[int, np.ndarray],
                        gts: dict[int, np.ndarray], cands: np.ndarray, cv_idx: np.ndarray, oof_pred: np.ndarray,
                        opts: FitOptions) -> dict[str, Any]:
    """K-fold CV of the pixel threshold over masked anomalies (whole near-duplicate ``groups``, one
    per masked image, held out together): pick t on the other folds, measure IoU on the held-out fold
    (a held-out image judged normal by its OOF score gets an empty mask)."""
    pred_of = {int(i): bool(p) for i, p in zip(cv_idx, oof_pred, strict=True)}
    masked = list(masked)
    if min(opts.cv_folds, len(np.unique(groups))) < 2:
        return {"mean_iou": None, "folds": 0}
    folds = grouped_folds(np.zeros(len(masked), dtype=np.int64), groups, opts.cv_folds, opts.seed + 1)
    k = len(folds)
    ious = []
    for tr_rows, te_rows in folds:
        te = [masked[j] for j in te_rows]
        tr = [masked[j] for j in tr_rows]
        t, _ = best_pixel_threshold([maps[i] for i in tr], [gts[i] for i in tr], cands)
        for i in te:
            p = (maps[i] >= t) if pred_of.get(i, True) else np.zeros_like(gts[i])
            inter = np.count_nonzero(p & gts[i])
            union = np.count_nonzero(p | gts[i])
            ious.append(1.0 if union == 0 else inter / union)
    return {"mean_iou": float(np.mean(ious)), "folds": k, "images": len(ious)}
