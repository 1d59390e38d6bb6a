"""The device switch: auto / cpu / cuda, from the option or $LOOKOUT_DEVICE; models move between devices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import EngineError, fit, load_model
from engine.device import resolve_device
from tests.engine.engine_synth import fast_options, make_items

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch on this machine")


def test_names_and_environment(monkeypatch) -> None:
    monkeypatch.delenv("LOOKOUT_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("AUTO").type == resolve_device(None).type
    monkeypatch.setenv("LOOKOUT_DEVICE", "cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setenv("LOOKOUT_DEVICE", "tpu")
    with pytest.raises(EngineError, match="not one of cpu, cuda, auto"):
        resolve_device(None)
    with pytest.raises(EngineError, match="cuda or cuda:N"):
        resolve_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(synth_train) -> None:
    with pytest.raises(EngineError, match="torch sees no CUDA device"):
        resolve_device("cuda")
    items, _ = synth_train
    with pytest.raises(EngineError, match="torch sees no CUDA device"):
        fit(items, options=fast_options(device="cuda"))


def test_explicit_cpu_model_reports_its_device(cls_model, tmp_path) -> None:
    cls_model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.device == torch.device("cpu")
    assert cls_model.training_report["device"] in ("cpu", "cuda", "cuda:0")


@needs_cuda
def test_trained_on_cuda_runs_on_cpu_and_back(tmp_path) -> None:
    items, _ = make_items(16, 12, seed=1)
    test, _ = make_items(6, 6, seed=2)
    on_gpu = fit(items, options=fast_options(device="cuda"))
    assert on_gpu.device.type == "cuda"
    on_cpu = fit(items, options=fast_options(device="cpu"))
    on_gpu.save(tmp_path / "g")
    moved = load_model(tmp_path / "g", device="cpu")
    images = [t.image for t in test]
    a, b, c = on_gpu.predict_batch(images), moved.predict_batch(images), on_cpu.predict_batch(images)
    # Same model on two devices: scores agree to float rounding; a separately trained CPU model
    # makes the same decisions (training differs only by rounding in the backbone).
    assert np.allclose([p.score for p in a], [p.score for p in b], atol=1e-3)
    assert [p.is_anomalous for p in a] == [p.is_anomalous for p in c]
    back = load_model(tmp_path / "g", device="cuda")
    assert np.allclose([p.score for p in back.predict_batch(images)], [p.score for p in a], atol=1e-5)
