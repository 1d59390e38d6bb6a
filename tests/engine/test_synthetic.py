"""End-to-end behaviour on a synthetic textured product with drawn defects."""
from __future__ import annotations

import numpy as np
import pytest

from engine import Metrics, Prediction, fit
from tests.engine.engine_synth import SCRATCH, STAIN, fast_options, make_items


def test_classification_separates_defects(cls_model, synth_test):
    items, _ = synth_test
    m = cls_model.evaluate(items)
    assert isinstance(m, Metrics)
    assert m.auroc is not None and m.auroc >= 0.95
    assert m.f1 >= 0.9
    assert len(m.per_image) == len(items)
    row = m.per_image[0]
    assert set(row) >= {"name", "label", "predicted_label", "is_anomalous", "confidence", "score", "correct"}
    assert m.per_label == {} and m.mean_iou is None
    d = m.to_dict()
    assert d["f1"] == m.f1


def test_prediction_contract(cls_model, synth_test):
    items, _ = synth_test
    for it in items[:3] + items[-3:]:
        p = cls_model.predict(it.image)
        assert isinstance(p, Prediction)
        assert 0.0 <= p.score <= 1.0 and 0.5 <= p.confidence <= 1.0
        assert p.is_anomalous == (p.score >= 0.5)
        assert p.confidence == pytest.approx(p.score if p.is_anomalous else 1 - p.score)
        assert p.anomaly_map.shape == it.image.shape[:2] and p.anomaly_map.dtype == np.float32
        assert p.anomaly_map.min() >= 0.0 and p.anomaly_map.max() <= 1.0
        assert p.mask is None and p.anomalies == []
    assert cls_model.image_size == (128, 128)
    assert not cls_model.is_segmentation and cls_model.label_colors == {}
    r = cls_model.training_report
    assert r["candidate"] in r["cv_auroc"] and r["n_normal"] == 16 and r["n_anomaly"] == 12


def test_predict_batch_matches_predict(cls_model, synth_test):
    items, _ = synth_test
    imgs = [it.image for it in items[:5]]
    batch = cls_model.predict_batch(imgs)
    for im, b in zip(imgs, batch, strict=True):
        s = cls_model.predict(im)
        assert s.score == pytest.approx(b.score, abs=1e-6)
        assert np.allclose(s.anomaly_map, b.anomaly_map, atol=1e-5)


def test_anomaly_map_peaks_on_defect(cls_model, synth_test):
    items, truth = synth_test
    hits = 0
    n = 0
    for it, gt in zip(items, truth, strict=True):
        if gt is None:
            continue
        n += 1
        amap = cls_model.predict(it.image).anomaly_map
        y, x = np.unravel_index(np.argmax(amap), amap.shape)
        ys, xs = np.nonzero(gt)
        if np.min(np.hypot(ys - y, xs - x)) <= 8:  # within ~one feature cell of the defect
            hits += 1
    assert hits >= 0.9 * n


def test_segmentation_masks_land_on_defects(seg_model, synth_test):
    items, truth = synth_test
    assert seg_model.is_segmentation
    assert seg_model.label_colors == {"stain": STAIN, "scratch": SCRATCH}
    ious, label_ok, label_n = [], 0, 0
    for it, gt in zip(items, truth, strict=True):
        p = seg_model.predict(it.image)
        assert p.mask is not None and p.mask.shape == it.image.shape and p.mask.dtype == np.uint8
        names = [a[0] for a in p.anomalies]
        assert names[0] == "background" and p.anomalies[0][1] == "#FFFFFF"
        assert sum(a[2] for a in p.anomalies) == pytest.approx(1.0)
        painted = np.any(p.mask != 255, axis=2)
        if gt is None:
            continue
        if p.is_anomalous:
            inter = np.count_nonzero(painted & gt)
            ious.append(inter / np.count_nonzero(painted | gt))
            kind = "stain" if "stain" in it.name else "scratch"
            if len(names) > 1:
                label_n += 1
                label_ok += int(max(p.anomalies[1:], key=lambda a: a[2])[0] == kind)
    assert np.mean(ious) >= 0.3
    assert label_ok >= 0.8 * label_n
    m = seg_model.evaluate(items)
    assert set(m.per_label) == {"stain", "scratch"}
    assert m.mean_iou is not None and m.mean_iou >= 0.3
    for v in m.per_label.values():
        assert {"precision", "recall", "f1", "iou"} <= set(v)
    cv = seg_model.training_report["seg_iou_cv"]
    assert cv["mean_iou"] is not None and cv["images"] == 12


def test_normal_prediction_has_background_only_mask(seg_model, synth_test):
    items, _ = synth_test
    for it in items[:12]:
        p = seg_model.predict(it.image)
        if not p.is_anomalous:
            assert (p.mask == 255).all()
            assert p.anomalies == [("background", "#FFFFFF", 1.0)]


def test_fit_is_deterministic_and_seed_matters_little():
    items, _ = make_items(8, 4, seed=5)
    test, _ = make_items(3, 3, seed=6)
    opts = fast_options(min_anomalies_for_supervised=4)
    a = fit(items, options=opts)
    b = fit(items, options=opts)
    pa = a.predict_batch([t.image for t in test])
    pb = b.predict_batch([t.image for t in test])
    for x, y in zip(pa, pb, strict=True):
        assert x.score == y.score and np.array_equal(x.anomaly_map, y.anomaly_map)
    for k, v in a.tensors.items():
        assert np.array_equal(v.numpy(), b.tensors[k].numpy()), k


def test_normal_only_training_and_progress():
    items, _ = make_items(10, 0, seed=7)
    test, _ = make_items(4, 4, seed=8)
    calls = []
    m = fit(items, test, fast_options(), progress=lambda f, msg: calls.append((f, msg)))
    assert m.training_report["candidate"] == "oneclass"
    assert m.test_metrics is not None and m.test_metrics.auroc >= 0.9
    fr = [f for f, _ in calls]
    assert fr[0] == 0.0 and fr[-1] == 1.0 and fr == sorted(fr)
