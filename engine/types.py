"""Plain data carried across the engine API: inputs (Item) and per-image outputs (Prediction)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Item:
    """One labelled image handed to ``fit`` / ``evaluate``.

    image: (H, W, 3) uint8 RGB. Greyscale (H, W) / (H, W, 1), RGBA and 16-bit arrays are converted
        (alpha dropped, 16-bit scaled to 8-bit); anything else is rejected with EngineError.
    label: "normal", "anomaly" or None (unlabelled items are ignored, as the service does).
    mask: (H, W, 3) uint8 RGB in label colours; white or black is background. None = no mask.
    name: echoed in per-image results (the service passes the S3 source-ref).
    """

    image: np.ndarray
    label: str | None
    mask: np.ndarray | None = None
    name: str = ""


@dataclass
class Prediction:
    """What ``Model.predict`` returns for one image.

    score is the anomaly score normalised so that 0.5 is the decision threshold (monotone in the raw
    score), so ``is_anomalous == (score >= 0.5)``. confidence is the confidence in the *prediction*:
    ``score`` for an anomaly, ``1 - score`` for a normal (so always >= 0.5), as LFV reports it.
    anomaly_map is (H, W) float32 in [0, 1] at the input resolution, normalised so that pixels
    >= 0.5 are the ones a segmentation model paints.
    For segmentation models, ``mask`` is (H, W, 3) uint8 with background #FFFFFF and anomalies in
    their label colours, and ``anomalies`` lists (label, "#RRGGBB", fraction of image area) with
    background first; fractions sum to 1. Classification models give mask None and anomalies [].
    """

    is_anomalous: bool
    confidence: float
    score: float
    anomaly_map: np.ndarray
    mask: np.ndarray | None = None
    anomalies: list[tuple[str, str, float]] = field(default_factory=list)
