"""Save/load: self-contained, bit-exact, and never executing code from the artifact."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from engine import EngineError, fit, load_model
from tests.engine.engine_synth import fast_options, make_items


def _assert_same_predictions(a, b, images):
    for pa, pb in zip(a.predict_batch(images), b.predict_batch(images), strict=True):
        assert pa.score == pb.score and pa.confidence == pb.confidence
        assert pa.is_anomalous == pb.is_anomalous
        assert np.array_equal(pa.anomaly_map, pb.anomaly_map)
        if pa.mask is None:
            assert pb.mask is None
        else:
            assert np.array_equal(pa.mask, pb.mask)
        assert pa.anomalies == pb.anomalies


def test_roundtrip_bit_exact_classification(cls_model, synth_test, tmp_path):
    items, _ = synth_test
    cls_model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "tensors.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert loaded.image_size == cls_model.image_size
    assert loaded.is_segmentation is False and loaded.label_colors == {}
    assert loaded.training_report["candidate"] == cls_model.training_report["candidate"]
    _assert_same_predictions(cls_model, loaded, [it.image for it in items])


def test_roundtrip_bit_exact_segmentation_with_test_metrics(seg_model, synth_test, tmp_path):
    items, _ = synth_test
    seg_model.test_metrics = seg_model.evaluate(items[:6])
    seg_model.save(str(tmp_path / "s"))
    loaded = load_model(str(tmp_path / "s"))
    assert loaded.is_segmentation and loaded.label_colors == seg_model.label_colors
    assert loaded.test_metrics.to_dict() == seg_model.test_metrics.to_dict()
    _assert_same_predictions(seg_model, loaded, [it.image for it in items])
    # Saving the loaded model again gives identical files.
    loaded.save(tmp_path / "s2")
    tensors = [(tmp_path / copy / "tensors.safetensors").read_bytes() for copy in ("s", "s2")]
    assert tensors[0] == tensors[1]


def test_artifact_is_not_pickle(cls_model, tmp_path):
    cls_model.save(tmp_path / "m")
    raw = (tmp_path / "m" / "tensors.safetensors").read_bytes()
    # safetensors: an 8-byte little-endian header length, then a JSON header (neither pickle nor zip).
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"] == {"format": "lookout-emulator-engine-model"}
    assert not raw.startswith(b"PK")
    json.loads((tmp_path / "m" / "model.json").read_text())


def test_load_rejects_missing_and_malformed(cls_model, tmp_path):
    with pytest.raises(EngineError, match="not a model artifact"):
        load_model(tmp_path / "nothing")
    cls_model.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "model.json"
    good = cfg_path.read_text()
    cfg_path.write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON"):
        load_model(tmp_path / "m")
    cfg = json.loads(good)
    cfg["format_version"] = 999
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(EngineError, match="format_version"):
        load_model(tmp_path / "m")
    cfg = json.loads(good)
    del cfg["image_norm"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(EngineError, match="malformed"):
        load_model(tmp_path / "m")
    cfg_path.write_text(good)
    (tmp_path / "m" / "tensors.safetensors").write_bytes(b"garbage")
    with pytest.raises(EngineError, match="cannot read"):
        load_model(tmp_path / "m")


def test_warmup_and_concurrent_predict(cls_model, synth_test, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    items, _ = synth_test
    cls_model.save(tmp_path / "w")
    fresh = load_model(tmp_path / "w")
    with ThreadPoolExecutor(4) as pool:  # first predictions race to trace the backbone
        scores = list(pool.map(lambda it: fresh.predict(it.image).score, items[:8]))
    assert scores == [cls_model.predict(it.image).score for it in items[:8]]
    fresh.warmup()


def test_training_report_explains_the_choice(seg_model, tmp_path):
    r = seg_model.report
    assert r["candidate"] in r["candidates"]
    assert set(r["cv_auroc"]) == set(r["candidates"])
    assert all("cv_auroc" in c for c in r["candidates"].values())
    assert isinstance(r["choice"], str) and r["choice"]
    assert isinstance(r["threshold"], float) and r["threshold_rule"]
    assert r["cv_confusion"]["tp"] + r["cv_confusion"]["fn"] == r["n_anomaly"]
    seg_model.save(tmp_path / "s")
    assert load_model(tmp_path / "s").report == json.loads(json.dumps(r))


def test_version_1_artifacts_still_load_and_predict_the_same(synth_test, tmp_path):
    """Models saved before parts owned their serialisation (format_version 1) keep working."""
    model = fit(make_items(10, 0, seed=7)[0], options=fast_options())
    model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "model.json").read_text())
    tensors = load_file(str(tmp_path / "m" / "tensors.safetensors"))
    assert set(config.pop("heads")) == {"bank"}
    config["format_version"] = 1
    v1_names = {"bank.mean": "feat_mean", "bank.std": "feat_std", "bank.entries": "bank"}
    old = tmp_path / "old"
    old.mkdir()
    save_file({v1_names.get(k, k): v for k, v in tensors.items()}, str(old / "tensors.safetensors"))
    (old / "model.json").write_text(json.dumps(config))
    items, _ = synth_test
    _assert_same_predictions(model, load_model(old), [it.image for it in items[:4]])
