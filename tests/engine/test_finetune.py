"""The fine-tuned candidate: seeded and reproducible on CPU, saved bit-exactly, and chosen on merit."""
from __future__ import annotations

import numpy as np
import pytest

from engine import EngineError, fit, load_model
from tests.engine.engine_synth import SCRATCH, STAIN, fast_options, make_items

COLOURS = {"stain": STAIN, "scratch": SCRATCH}


@pytest.fixture(scope="module")
def data():
    train, _ = make_items(14, 10, seed=11, masks=True)
    test, _ = make_items(6, 6, seed=12)
    return train, test


def _finetuned(train, seed: int = 0):
    return fit(train, options=fast_options(seed=seed, candidates=["finetuned"]), label_colors=COLOURS)


def test_finetuning_is_seeded_and_reproducible(data, tmp_path):
    train, test = data
    a, b = _finetuned(train), _finetuned(train)
    assert a.report["candidate"] == "finetuned"
    tuned = [k for k in a.tensors if k.startswith("finetuned.")]
    assert len(tuned) > 3 * 10  # three fold networks, each with upper stages and two heads
    for k, v in a.tensors.items():
        assert np.array_equal(v.numpy(), b.tensors[k].numpy()), k
    images = [t.image for t in test]
    assert [p.score for p in a.predict_batch(images)] == [p.score for p in b.predict_batch(images)]
    # The weights moved away from the pretrained ones, and another seed trains other networks.
    c = _finetuned(train, seed=1)
    assert any(not np.array_equal(c.tensors[k].numpy(), a.tensors[k].numpy()) for k in tuned)
    a.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.candidate == "finetuned"
    for pa, pb in zip(a.predict_batch(images), loaded.predict_batch(images), strict=True):
        assert pa.score == pb.score and np.array_equal(pa.anomaly_map, pb.anomaly_map)
        assert np.array_equal(pa.mask, pb.mask)


def test_finetuned_model_detects_and_explains(data):
    train, test = data
    model = _finetuned(train)
    report = model.report
    assert report["candidates"]["finetuned"]["cv_auroc"] >= 0.9
    assert "finetuned" in report["choice"] or report["choice"].startswith("highest")
    metrics = model.evaluate(test)
    assert metrics.auroc is not None and metrics.auroc >= 0.9
    assert model.predict(test[0].image).anomaly_map.shape == test[0].image.shape[:2]


def test_finetuning_needs_labelled_anomalies_and_can_be_turned_off():
    normal_only, _ = make_items(10, 0, seed=13)
    model = fit(normal_only, options=fast_options(candidates=["finetuned"]))
    assert model.candidate == "oneclass" and "finetuned" not in model.report["candidates"]
    train, _ = make_items(12, 9, seed=14)
    off = fit(train, options=fast_options(finetune_epochs=0))
    assert "finetuned" not in off.report["candidates"]
    with pytest.raises(EngineError, match="candidates"):
        fit(train, options=fast_options(candidates=["bogus"]))
    with pytest.raises(EngineError, match="finetune_epochs"):
        fit(train, options=fast_options(finetune_epochs=-1))


def test_fold_networks_score_in_units_of_their_own_held_out_normals():
    """Fold networks end on different logit scales; pooling their raw out-of-fold logits mixed the
    scales under one threshold. Each network's scores are now centred and scaled on the normals of its
    own held-out fold, and the deployed score is the mean of those calibrated scores."""
    import torch

    from engine.backbone import Trunk, load_pretrained_state_dict, trunk_state_dict
    from engine.finetune import FineTuned, out_of_fold
    from engine.groups import grouped_folds
    from engine.state import own, put

    trunk = Trunk("efficientnet_lite0",
                  trunk_state_dict("efficientnet_lite0", load_pretrained_state_dict("efficientnet_lite0")))
    torch.manual_seed(0)
    images = torch.rand(24, 3, 64, 64)
    labels = np.array([0] * 16 + [1] * 8)
    images[labels == 1, :, 20:40, 20:40] = 1.0  # a bright square on every anomaly
    with torch.inference_mode():
        base = trunk.eager(images)[0].clone()
    cells = torch.full((len(labels), base.shape[-2] // 2, base.shape[-1] // 2), -1.0)  # the /16 grid
    cells[labels == 0] = 0.0
    folds = grouped_folds(labels, np.arange(len(labels)), 3, seed=0)
    scores, tuned = out_of_fold(trunk, base, labels, cells, folds, 1, 0, torch.device("cpu"))
    for _, held in folds:
        normals = scores[held][labels[held] == 0]
        assert abs(np.median(normals)) < 1e-9
        assert abs(np.quantile(normals, 0.9) - np.median(normals) - 1.0) < 1e-9
    assert len(set(tuned.calibration)) == 3 and all(scale > 0 for _, scale in tuned.calibration)
    # Deployed: the mean of the calibrated logits, and the calibration survives save and load.
    with torch.inference_mode():
        raw = np.stack([FineTuned([net]).image_scores(base) for net in tuned.nets], 1)
    centre, scale = np.array(tuned.calibration).T
    assert np.allclose(tuned.image_scores(base), ((raw - centre) / scale).mean(1), atol=1e-5)
    stored: dict = {}
    tensors: dict = {}
    put("finetuned", tuned, stored, tensors)
    restored = FineTuned.restore(stored["finetuned"], own("finetuned", tensors), trunk)
    assert np.allclose(restored.image_scores(base), tuned.image_scores(base), atol=1e-5)
