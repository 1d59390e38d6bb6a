"""The getting-started cookies dataset, imported as a user would: upload, prefix the template, create."""
from __future__ import annotations

import json

import pytest

from emulator.services.datasets import list_entries
from tests.api.datasets_support import BUCKET, DatasetKit, labelled
from tests.shared_datasets import COOKIES_DIR

pytestmark = pytest.mark.slow


@pytest.fixture
def cookies() -> None:
    if not (COOKIES_DIR / "dataset-files" / "manifests" / "template.manifest").exists():
        pytest.skip(f"the shared cookies dataset is not at {COOKIES_DIR}")


def test_cookies_segmentation_train_and_classification_test(kit: DatasetKit, emulator, cookies) -> None:
    files = COOKIES_DIR / "dataset-files"
    for folder in ("training-images", "mask-images"):
        for path in sorted((files / folder).iterdir()):
            kit.put(f"{folder}/{path.name}", path.read_bytes())
    base = f"s3://{BUCKET}/{kit.prefix}"
    lines = []
    for raw in (files / "manifests" / "template.manifest").read_text().splitlines():
        line = json.loads(raw)
        for attribute in ("source-ref", "anomaly-mask-ref"):
            if attribute in line:
                line[attribute] = base + line[attribute]
        lines.append(line)
    train = kit.create("train", lines)
    assert train["Status"] == "CREATE_COMPLETE", train.get("StatusMessage")
    assert train["ImageStats"] == {"Total": 63, "Labeled": 63, "Normal": 31, "Anomaly": 32}
    masked = [e for e in list_entries(emulator.backend, kit.project, "train") if e.mask_ref]
    assert len(masked) == 32 and all(e.label_colors == {"cracked": "#23A436"} for e in masked)

    kit.create("test")
    test_lines = []
    for path in sorted((COOKIES_DIR / "test-images").glob("*.jpg")):
        ref = kit.put(f"test-images/{path.name}", path.read_bytes())
        test_lines.append(labelled(ref, "anomaly" if "anomaly" in path.name else "normal"))
    test = kit.update(test_lines, dataset_type="test")
    assert test["Status"] == "UPDATE_COMPLETE", test.get("StatusMessage")
    assert test["ImageStats"] == {"Total": 22, "Labeled": 22, "Normal": 14, "Anomaly": 8}
