"""Bad or unusual inputs are converted or rejected with an actionable EngineError."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import EngineError, FitOptions, Item, fit
from tests.engine.engine_synth import STAIN, fast_options, make_items


@pytest.fixture(scope="module")
def small():
    items, _ = make_items(6, 3, seed=11)
    return items


@pytest.fixture(scope="module")
def small_masked():
    items, _ = make_items(6, 3, seed=11, masks=True)
    return items


def test_mixed_sizes_rejected_naming_the_item(small):
    items = list(small)
    big = np.zeros((140, 128, 3), np.uint8)
    items.insert(3, Item(big, "normal", None, "s3://b/odd.png"))
    with pytest.raises(EngineError, match=r"odd\.png.*128x140.*same size"):
        fit(items, options=fast_options())


def test_no_normals_rejected(small):
    anomalies = [it for it in small if it.label == "anomaly"]
    with pytest.raises(EngineError, match="at least 2 images labelled 'normal'"):
        fit(anomalies, options=fast_options())
    with pytest.raises(EngineError, match="normal"):
        fit([Item(it.image, None) for it in small], options=fast_options())  # all unlabelled


def test_bad_label_and_types(small):
    with pytest.raises(EngineError, match="label must be"):
        fit([Item(small[0].image, "good")] + list(small), options=fast_options())
    with pytest.raises(EngineError, match="engine.Item"):
        fit([small[0].image], options=fast_options())
    with pytest.raises(EngineError, match="options"):
        fit(list(small), options={"seed": 1})
    with pytest.raises(EngineError, match="resolution"):
        fit(list(small), options=FitOptions(resolution=10))


def test_masks_require_label_colors_and_known_colours(small_masked):
    small = small_masked
    with pytest.raises(EngineError, match="label_colors"):
        fit(list(small), options=fast_options())
    with pytest.raises(EngineError, match="neither background"):
        fit(list(small), options=fast_options(), label_colors={"other": "#00FF00"})
    with pytest.raises(EngineError, match="background"):
        fit(list(small), options=fast_options(), label_colors={"stain": "#FFFFFF"})
    with pytest.raises(EngineError, match="#RRGGBB"):
        fit(list(small), options=fast_options(), label_colors={"stain": "red"})
    bad = [Item(it.image, it.label, it.mask[:64] if it.mask is not None else None, it.name) for it in small]
    with pytest.raises(EngineError, match="mask is 128x64 but the image is 128x128"):
        fit(bad, options=fast_options(), label_colors={"stain": STAIN, "scratch": "#1C3FE0"})


def test_unlabelled_items_are_ignored(cls_model, synth_train):
    items, _ = synth_train
    noise = Item(np.zeros((50, 50), np.uint8), None)  # wrong size, but unlabelled: ignored
    m = fit(list(items[:10]) + [noise] + list(items[16:22]), options=fast_options())
    assert m.training_report["n_train"] == 16


def test_greyscale_rgba_16bit_are_converted(cls_model, synth_test):
    items, _ = synth_test
    rgb = items[-1].image
    ref = cls_model.predict(rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], 2)
    assert cls_model.predict(rgba).score == ref.score
    assert cls_model.predict(rgb.astype(np.uint16) * 257).score == ref.score
    grey = rgb.mean(2).astype(np.uint8)
    p = cls_model.predict(grey)
    assert p.anomaly_map.shape == grey.shape


def test_greyscale_training(synth_train):
    items, _ = synth_train
    grey = [Item(it.image.mean(2).astype(np.uint8), it.label, None, it.name) for it in items[:8]]
    m = fit(grey, options=fast_options())
    assert m.predict(grey[0].image).anomaly_map.shape == (128, 128)


def test_predict_rejects_wrong_size_dtype_channels(cls_model):
    with pytest.raises(EngineError, match="trained on 128x128"):
        cls_model.predict(np.zeros((100, 128, 3), np.uint8))
    with pytest.raises(EngineError, match="dtype"):
        cls_model.predict(np.zeros((128, 128, 3), np.float32))
    with pytest.raises(EngineError, match="channels"):
        cls_model.predict(np.zeros((128, 128, 2), np.uint8))
    with pytest.raises(EngineError, match="image 1"):
        cls_model.predict_batch([np.zeros((128, 128, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(EngineError, match="expects 128x128"):
        cls_model.evaluate([Item(np.zeros((64, 64, 3), np.uint8), "normal")])
    with pytest.raises(EngineError, match="no labelled items"):
        cls_model.evaluate([Item(np.zeros((128, 128, 3), np.uint8), None)])


def test_time_cap_raises(synth_train):
    items, _ = synth_train
    with pytest.raises(EngineError, match="max_train_seconds"):
        fit(items, options=fast_options(max_train_seconds=1e-6))


def test_torchvision_backbone_from_local_file(tmp_path, synth_train, monkeypatch):
    import torchvision

    # Random weights stand in for a user's ImageNet file: this checks the loading path only.
    path = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    monkeypatch.setenv("LOOKOUT_BACKBONE_WEIGHTS", str(path))
    items, _ = synth_train
    m = fit(items[:6] + items[16:19], options=fast_options(backbone="resnet18"))
    assert m.config["backbone"] == "resnet18"
    p = m.predict(items[0].image)
    assert p.anomaly_map.shape == (128, 128)
