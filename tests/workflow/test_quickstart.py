"""client_examples/quickstart.py: the whole inspection workflow, run as a user runs it, on tiny data."""
from __future__ import annotations

import json
import re
import uuid
from collections import Counter

import pytest

from tests.workflow.examples import import_example, python_example
from tests.workflow.synthetic import write_cookies_layout, write_folder_layout

quickstart = import_example("quickstart")
COOKIES = import_example("lookout_project").COOKIES

# The service's minimums for separate datasets (10 normal to train; 10 of each label to test), new
# images with labels from their folders, and two without a label, which a non-interactive run leaves out.
COUNTS = {"train/normal": 10, "train/anomaly": 4, "test/normal": 10, "test/anomaly": 10,
          "extra/normal": 2, "extra/anomaly": 2, "extra": 2}


@pytest.mark.slow
def test_quickstart_trains_verifies_adds_and_retrains(lookoutvision_emulator, tmp_path):
    project = f"quickstart-{uuid.uuid4().hex[:8]}"
    data = write_folder_layout(tmp_path, COUNTS)
    out = python_example("quickstart.py", "--data", str(data), "--project", project, "--bucket", project,
                         "--non-interactive", "--poll-interval", "0.2")

    lookout = lookoutvision_emulator.client("lookoutvision")
    models = {m["ModelVersion"] for m in lookout.list_models(ProjectName=project)["Models"]}
    assert models == {"1", "2"}
    described = {v: lookout.describe_model(ProjectName=project, ModelVersion=v)["ModelDescription"] for v in models}
    assert {m["Status"] for m in described.values()} == {"TRAINED"}  # model 1 was stopped again

    pages = lookout.get_paginator("list_dataset_entries").paginate(ProjectName=project, DatasetType="train")
    entries = [json.loads(line) for page in pages for line in page["DatasetEntries"]]
    labels = {e["source-ref"]: e["anomaly-label-metadata"]["class-name"] for e in entries}
    extra = f"s3://{project}/{project}/extra"
    assert len(labels) == 14 + 4
    assert labels[f"{extra}/anomaly/extra-anomaly-0.jpg"] == "anomaly"
    assert labels[f"{extra}/normal/extra-normal-1.jpg"] == "normal"
    assert f"{extra}/extra-0.jpg" not in labels  # unlabelled images were left out

    assert "uploaded: 40/40" in out
    assert "model 1: TRAINED" in out and "model 2: TRAINED" in out and "model 1: HOSTED" in out
    assert len(re.findall(r"^\s+\[\s*\d+/6\] extra/\S+\s+(normal|anomaly)\s+confidence \d\.\d\d$", out, re.M)) == 6
    assert "2 left out" in out
    assert f"See it in the web console: {lookoutvision_emulator.endpoint_url}/console/projects/{project}" in out
    for title, key in (("F1 score", "F1Score"), ("Precision", "Precision"), ("Recall", "Recall")):
        first, second = (described[v]["Performance"][key] for v in ("1", "2"))
        cells = (title, f"{first:.3f}", f"{second:.3f}", f"{second - first:+.3f}")
        row = r"\s+".join(re.escape(cell) for cell in cells)
        assert re.search(rf"^{row}$", out, re.M), out
    assert re.search(r"^Training images\s+14\s+18\s+\+4$", out, re.M)


def test_verify_asks_only_about_images_without_a_label(monkeypatch, tmp_path):
    Image = quickstart.Image
    labelled = Image(tmp_path / "a.jpg", "extra/normal/a.jpg", "normal")
    b, c, d = (Image(tmp_path / f"{n}.jpg", f"extra/{n}.jpg", None) for n in "bcd")
    results = [(labelled, {"IsAnomalous": True}), (b, {"IsAnomalous": True}), (c, {"IsAnomalous": False}),
               (d, {"IsAnomalous": False})]
    answers, prompts = iter(["", "what?", "a", "s"]), []
    monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or next(answers))

    verified = quickstart.verify(results, interactive=True)
    assert [(image.key, label) for image, label in verified] == [
        ("extra/normal/a.jpg", "normal"),  # the folder wins over the model's "anomaly"
        ("extra/b.jpg", "anomaly"),  # Enter: agree with the model
        ("extra/c.jpg", "anomaly"),  # asked again after a wrong answer, then corrected
    ]  # d was skipped
    assert len(prompts) == 4 and "the model says anomaly" in prompts[0]
    assert [label for _, label in quickstart.verify(results, interactive=False)] == ["normal"]


def test_extra_images_labeled_by_their_file_names(tmp_path):
    data = write_folder_layout(tmp_path, {"train/normal": 1, "test/normal": 1, "extra": 1})
    for name in ("new-anomaly-7.png", "normal_12.jpg", "part-3.jpg", "normal-or-anomaly.jpg"):
        (data / "extra" / name).write_bytes((data / "extra" / "extra-0.jpg").read_bytes())
    labels = {image.path.name: image.label for image in quickstart.load_images(data)["extra"]}
    assert labels == {"extra-0.jpg": None, "new-anomaly-7.png": "anomaly", "normal_12.jpg": "normal",
                      "part-3.jpg": None, "normal-or-anomaly.jpg": None}


def test_the_cookies_layout_maps_onto_train_test_and_extra(tmp_path):
    splits = quickstart.load_images(write_cookies_layout(tmp_path, normal=22, anomaly=21, test=4))
    counts = {split: Counter(image.label for image in images) for split, images in splits.items()}
    assert counts == {"train": {"normal": 20, "anomaly": 20}, "test": {"normal": 2, "anomaly": 1},
                      "extra": {"normal": 2, "anomaly": 2}}
    keys = [image.key for images in splits.values() for image in images]
    assert len(set(keys)) == len(keys)
    assert "test/anomaly/anomaly-21.jpg" in keys and "extra/test-anomaly-1.jpg" in keys


def test_an_unknown_layout_is_refused_with_the_expected_ones(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(SystemExit, match="train/, test/, extra/"):
        quickstart.load_images(tmp_path)
    write_folder_layout(tmp_path, {"train/normal": 1, "test/normal": 1})
    with pytest.raises(SystemExit, match="no .jpg/.png images for 'extra'"):
        quickstart.load_images(tmp_path)


@pytest.mark.slow
def test_the_default_cookies_dataset_meets_the_service_minimums():
    if not COOKIES.is_dir():
        pytest.skip(f"the shared cookies dataset is not at {COOKIES}")
    splits = quickstart.load_images(COOKIES)
    counts = {split: Counter(image.label for image in images) for split, images in splits.items()}
    assert counts == {"train": {"normal": 20, "anomaly": 20}, "test": {"normal": 11, "anomaly": 12},
                      "extra": {"normal": 14, "anomaly": 8}}
