"""Accuracy on KolektorSDD (thin, low-contrast cracks on grayscale commutators, with masks).

The shared development set is read in place and never copied; the test skips when it is absent.
Test F1 is measured at the threshold the model chose from its training data alone.
"""
from __future__ import annotations

import numpy as np
import pytest

from engine import FitOptions, Item, fit
from tests.engine.engine_synth import kolektor_dir

pytestmark = pytest.mark.slow


def _load(root, split: str) -> list[Item]:
    from PIL import Image

    items = []
    for label in ("normal", "anomaly"):
        for path in sorted((root / split / label).glob("*.png")):
            with Image.open(path) as im:
                image = np.asarray(im.convert("L"))  # greyscale in, as users' PNGs are
            mask = None
            if label == "anomaly":
                with Image.open(root / "masks" / split / path.name) as im:
                    crack = np.asarray(im.convert("L")) > 127
                mask = np.full(crack.shape + (3,), 255, dtype=np.uint8)
                mask[crack] = (255, 0, 0)
            items.append(Item(image, label, mask, path.stem))
    return items


def test_kolektorsdd_thin_cracks_meet_the_bar():
    root = kolektor_dir()
    if not (root / "train" / "anomaly").is_dir():
        pytest.skip(f"KolektorSDD not found at {root} (set LOOKOUT_KOLEKTOR_DIR)")
    train, test = _load(root, "train"), _load(root, "test")
    model = fit(train, test, FitOptions(seed=0, max_train_seconds=3600), label_colors={"crack": "#FF0000"})
    report = model.report
    assert report["candidates"][report["candidate"]]["cv_auroc"] >= 0.95, report["candidates"]
    m = model.test_metrics
    assert m is not None
    # Measured 2026-11-30 (seed 0): the fine-tuned candidate wins (CV AUROC 0.998), test AUROC 0.999,
    # P/R/F1 0.913/1.0/0.955 (BENCHMARKS.md; seeds 1 and 2 gave F1 0.905 and 0.923). The bars leave
    # room for floating-point differences between CPUs.
    assert report["candidate"] == "finetuned", report["candidates"]
    assert m.auroc >= 0.99, m.per_image
    assert m.recall >= 0.9 and m.f1 >= 0.9, [p for p in m.per_image if not p["correct"]]
    # Engine v3 round 5 (2026-12-05, seeds 0/1/2 through the API): F1 0.977 / 0.977 / 0.977, out-of-fold
    # F1 0.935 / 0.983 / 0.951, pixel AUROC 0.992-0.993, mean IoU 0.22-0.24; seeds 3-5 (scratch runs)
    # gave 0.913 / 0.955 / 0.933. With masks the fine-tuned networks' cell head is part of the score.
    assert report["finetuned_score"] == "image logit + maximum of the cell head", report.get("finetuned_score")
    # KolektorSDD's captures are distinct regions of each part: no near-duplicates are found.
    assert abs(report["cv_f1"] - m.f1) <= 0.05, (report["cv_f1"], m.f1)
    assert report["near_duplicates"]["images_with_siblings"] == 0, report["near_duplicates"]
    assert m.pixel_auroc is not None and m.pixel_auroc >= 0.97, m.pixel_auroc
    assert m.mean_iou is not None and m.mean_iou >= 0.15, m.mean_iou
