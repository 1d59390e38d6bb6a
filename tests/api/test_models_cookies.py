"""The getting-started cookies dataset through the whole model life cycle, as a boto3 user runs it.

The cookies' separate test set has only 8 anomalies, fewer than the 10 a test dataset needs
(limits.md), so - as the real service would have required - the 63 training images are a single
dataset that CreateModel splits; the 22 test images are then sent to DetectAnomalies.
"""
from __future__ import annotations

from typing import Any

import pytest

from tests.api.models_support import new_kit
from tests.shared_datasets import COOKIES_DIR

pytestmark = pytest.mark.slow


def test_cookies_train_host_detect(lookout: Any, s3: Any, project_name: str) -> None:
    if not (COOKIES_DIR / "dataset-files" / "manifests" / "template.manifest").exists():
        pytest.skip(f"the shared cookies dataset is not at {COOKIES_DIR}")
    kit = new_kit(lookout, s3, project_name)
    dataset = kit.create("train", kit.cookies_lines(COOKIES_DIR))
    assert dataset["ImageStats"] == {"Total": 63, "Labeled": 63, "Normal": 31, "Anomaly": 32}
    kit.create_model()
    described = kit.wait_model("1", timeout=900)
    assert described["Status"] == "TRAINED", described["StatusMessage"]
    assert described["Performance"]["F1Score"] >= 0.9

    kit.host("1")
    try:
        results = {path.name: kit.detect("1", path.read_bytes(), "image/jpeg")
                   for path in sorted((COOKIES_DIR / "test-images").glob("*.jpg"))}
    finally:
        lookout.stop_model(ProjectName=project_name, ModelVersion="1")
    assert len(results) == 22
    hits = sum(r["IsAnomalous"] for name, r in results.items() if "anomaly" in name)
    false_alarms = sum(r["IsAnomalous"] for name, r in results.items() if "normal" in name)
    precision, recall = hits / max(1, hits + false_alarms), hits / 8
    assert 2 * precision * recall / (precision + recall) >= 0.9
    for result in results.values():  # a segmentation model: the cracks are labelled in their colour
        assert result["Anomalies"][0]["Name"] == "background"
        assert {a["Name"]: a["PixelAnomaly"]["Color"] for a in result["Anomalies"][1:]} in ({}, {"cracked": "#23A436"})
    assert any(len(r["Anomalies"]) > 1 for name, r in results.items() if "anomaly" in name)
