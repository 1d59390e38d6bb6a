"""The console workflow end to end in headless Chromium, on small synthetic images.

Create a project, upload and label images, train, read the metrics and test results, host the
model, run trial detections (uploaded files and an S3 prefix), verify the predictions, add them to
the training dataset, retrain and compare the two versions — asserting what each page shows.
Screenshots of every page go to $CONSOLE_SCREENSHOTS (docs/screenshots for the README).
"""
from __future__ import annotations

import re
import uuid

import pytest
from selenium.webdriver.support.ui import Select

from tests.console.console_support import (
    click_and_load,
    drop_files,
    find,
    find_all,
    flash,
    is_stale,
    shoot,
    text,
    until,
    upload_files,
    wait_for_status,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def stat(driver, name: str) -> int:
    return int(text(driver, f"[data-stat={name}]"))


def upload(driver, send, zone: str, paths, expected_notice: str) -> None:
    """Upload `paths` with `send` (choose or drop); uploads end by loading the page again with a notice."""
    old = find(driver, "html")
    send(driver, zone, paths)
    until(lambda: is_stale(old) and expected_notice in flash(driver), 120,
          lambda: f"the notice {expected_notice!r} (page says {flash(driver)!r}; upload status "
                  f"{[e.text for e in find_all(driver, '[data-upload-status]')]!r})")


def test_console_workflow(browser, console_url, image_files, screenshot_dir):
    driver = browser
    project = f"parts-inspection-{uuid.uuid4().hex[:6]}"

    # Projects: create one from the list page.
    driver.get(f"{console_url}/")
    find(driver, "#create-project input[name=name]").send_keys(project)
    click_and_load(driver, find(driver, "#create-project button"))
    assert f"Project {project} created." in flash(driver)
    assert text(driver, "h1") == project
    assert not find(driver, "#train-button").is_enabled()
    assert "no train dataset" in text(driver, "#train-reasons")

    # Separate training and test datasets; the console lands on the training dataset.
    find(driver, "#create-dataset input[value='train,test']").click()
    click_and_load(driver, find(driver, "#create-dataset button"))
    assert text(driver, "h1") == "Training dataset"

    # Upload 10 normal and 2 anomalous images unlabelled through the file chooser, then label them in bulk.
    normals = image_files("train-normal", 10, False)
    anomalies = image_files("train-anomaly", 2, True)
    upload(driver, upload_files, "[data-upload]", normals + anomalies, "Uploaded 12 images.")
    assert len(find_all(driver, ".tile")) == 12
    assert {t.get_attribute("data-label") for t in find_all(driver, ".tile")} == {"unlabeled"}
    assert not find(driver, "#train-button").is_enabled()

    click_and_load(driver, find(driver, "[data-filter=unlabeled]"))
    find(driver, "[data-select-all]").click()
    assert text(driver, "[data-selected-count]") == "12"
    click_and_load(driver, find(driver, "#label-normal"))
    assert "Labeled 12 images normal." in flash(driver)
    assert find_all(driver, ".tile") == [] and "No images match this filter" in text(driver, "main")

    click_and_load(driver, find(driver, "[data-filter=all]"))
    for tile in find_all(driver, ".tile"):
        if "train-anomaly" in tile.get_attribute("data-ref"):
            find(tile, ".pick").click()
    click_and_load(driver, find(driver, "#label-anomaly"))
    assert (stat(driver, "normal"), stat(driver, "anomaly")) == (10, 2)
    click_and_load(driver, find(driver, "[data-filter=anomaly]"))
    assert sorted(t.get_attribute("data-ref").rsplit("/", 1)[1] for t in find_all(driver, ".tile")) == \
        ["train-anomaly-00.png", "train-anomaly-01.png"]
    assert all(t.get_attribute("data-label") == "anomaly" for t in find_all(driver, ".tile"))

    # Remove an image uploaded by mistake.
    click_and_load(driver, find(driver, "[data-filter=all]"))
    upload(driver, upload_files, "[data-upload]", image_files("mistake", 1, False), "Uploaded 1 image.")
    for tile in find_all(driver, ".tile"):
        if "mistake" in tile.get_attribute("data-ref"):
            find(tile, ".pick").click()
    click_and_load(driver, find(driver, "#remove-images"), confirm=True)
    assert "Removed 1 image from the dataset." in flash(driver)
    assert len(find_all(driver, ".tile")) == 12
    assert "test dataset" in text(driver, "#train-reasons")  # the empty test dataset is what is missing now
    shoot(driver, screenshot_dir, "dataset")

    # The test dataset: drag and drop labelled images.
    driver.get(f"{console_url}/projects/{project}/datasets/test")
    Select(find(driver, "[data-upload] select[name=label]")).select_by_value("normal")
    upload(driver, drop_files, "[data-upload]", image_files("test-normal", 10, False), "Uploaded 10 images.")
    Select(find(driver, "[data-upload] select[name=label]")).select_by_value("anomaly")
    upload(driver, drop_files, "[data-upload]", image_files("test-anomaly", 10, True), "Uploaded 10 images.")
    assert (stat(driver, "normal"), stat(driver, "anomaly")) == (10, 10)
    assert find(driver, "#train-button").is_enabled() and not find_all(driver, "#train-reasons")

    # Train: the model page shows live status, then the metrics and the per-image test results.
    find(driver, ".train-form input[name=description]").send_keys("first-model")
    click_and_load(driver, find(driver, "#train-button"))
    assert text(driver, "h1") == "Model 1", flash(driver)
    assert text(driver, "#status") == "TRAINING" and find_all(driver, "#model-status[data-poll]")  # live status
    wait_for_status(driver, "#status", "TRAINED")
    for metric in ("#precision", "#recall", "#f1"):
        assert re.fullmatch(r"\d+\.\d%", text(driver, metric)), text(driver, metric)
    tiles = find_all(driver, "#result-grid .tile")
    assert len(tiles) == 20
    correct = int(text(driver, "#correct-count"))
    assert correct + int(text(driver, "#incorrect-count")) == 20
    assert sum(t.get_attribute("data-correct") == "true" for t in tiles) == correct
    assert correct >= 16, "the synthetic scratches are easy: most test images should be right"
    shoot(driver, screenshot_dir, "model")

    # Host the model from its page.
    click_and_load(driver, find(driver, "#start-model"))
    wait_for_status(driver, "#status", "HOSTED", 120)
    assert find_all(driver, "#stop-model")

    # Trial detection on images uploaded from the computer.
    driver.get(f"{console_url}/projects/{project}/trials")
    find(driver, "#trial-form input[name=name]").send_keys("new-batch")
    trial_images = image_files("trial-normal", 2, False) + image_files("trial-anomaly", 2, True)
    upload_files(driver, "#trial-form [data-upload]", trial_images)
    click_and_load(driver, find(driver, "#run-trial"))
    assert text(driver, "h1") == "Trial detection new-batch"
    wait_for_status(driver, "#trial-status", "COMPLETED", 120)
    tiles = find_all(driver, "#trial-grid .tile")
    assert len(tiles) == 4
    for tile in tiles:
        assert tile.get_attribute("data-predicted") in ("normal", "anomaly")
        assert re.fullmatch(r"\d+\.\d%", text(tile, ".confidence"))
    # A classification model's trial shows where it looked: a heatmap over every image.
    heatmaps = [find(tile, "img.heatmap") for tile in tiles]
    until(lambda: all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", h) == 96
                      for h in heatmaps), 20, "the trial's heatmaps to load")
    assert all(h.is_displayed() for h in heatmaps)
    shoot(driver, screenshot_dir, "trial")
    flagged = next((t for t in tiles if t.get_attribute("data-predicted") == "anomaly"), tiles[0])
    click_and_load(driver, find(flagged, "a.open"))  # the detail view of one image
    until(lambda: find(driver, "#viewer").get_attribute("data-ready"), 10, "the image viewer")
    assert find(driver, "#stage img.layer[data-layer=heatmap]").is_displayed()
    assert "Predicted label" in text(driver, "#image-facts") and "Anomaly score" in text(driver, "#image-facts")
    driver.get(f"{console_url}/projects/{project}/trials/new-batch")
    click_and_load(driver, find(driver, "[data-sort=confidence]"))  # the least certain predictions first
    confidences = [float(text(t, ".confidence").rstrip("%")) for t in find_all(driver, "#trial-grid .tile")]
    assert len(confidences) == 4 and confidences == sorted(confidences)

    # Verify each prediction against the truth (file names say it), save, add to the training dataset.
    for tile in find_all(driver, "#trial-grid .tile"):
        truth = "anomaly" if "trial-anomaly" in tile.get_attribute("data-ref") else "normal"
        verdict = "correct" if tile.get_attribute("data-predicted") == truth else "incorrect"
        find(tile, f"input[data-verdict={verdict}]").click()
    click_and_load(driver, find(driver, "#save-verification"))
    assert "Verified 4 images." in flash(driver)
    verified = {t.get_attribute("data-ref").rsplit("/", 1)[1]: t.get_attribute("data-verified")
                for t in find_all(driver, "#trial-grid .tile")}
    assert verified == {"trial-normal-00.png": "normal", "trial-normal-01.png": "normal",
                        "trial-anomaly-00.png": "anomaly", "trial-anomaly-01.png": "anomaly"}
    wrong = sorted(t.get_attribute("data-ref") for t in find_all(driver, "#trial-grid .tile")
                   if t.get_attribute("data-predicted") != t.get_attribute("data-verified"))
    click_and_load(driver, find(driver, "[data-filter=incorrect]"))  # the predictions the user corrected
    assert sorted(t.get_attribute("data-ref") for t in find_all(driver, "#trial-grid .tile")) == wrong
    click_and_load(driver, find(driver, "[data-filter=all]"))
    click_and_load(driver, find(driver, "#add-verified"))
    assert "Added 4 verified images to the training dataset." in flash(driver)
    assert len(find_all(driver, "#trial-grid .tile .meta")) == 4
    assert text(driver, "#trial-grid").count("in training dataset") == 4

    # Retrain from the trial page; the new version learnt from 4 more images.
    click_and_load(driver, find(driver, "#train-button"))
    assert text(driver, "h1") == "Model 2", flash(driver)
    wait_for_status(driver, "#status", "TRAINED")

    # A second trial detection from an S3 prefix: the images the first one uploaded to the console bucket.
    first_image = find(driver, "#result-grid .tile").get_attribute("data-ref")  # any image in the console bucket
    bucket = first_image.split("/")[2]
    driver.get(f"{console_url}/projects/{project}/trials?version=1")
    find(driver, "#trial-form input[name=name]").send_keys("from-s3")
    find(driver, "#trial-form input[name=s3_uri]").send_keys(f"s3://{bucket}/trials/{project}/new-batch/")
    click_and_load(driver, find(driver, "#run-trial"))
    wait_for_status(driver, "#trial-status", "COMPLETED", 120)
    assert len(find_all(driver, "#trial-grid .tile")) == 4

    # Both trial detections are listed and kept.
    driver.get(f"{console_url}/projects/{project}/trials")
    rows = {r.get_attribute("data-trial"): r.text for r in find_all(driver, "#trial-table tr[data-trial]")}
    assert set(rows) == {"new-batch", "from-s3"} and all("COMPLETED" in row for row in rows.values())
    assert "4" in rows["new-batch"].split() and f"s3://{bucket}/trials/{project}/new-batch/" in rows["from-s3"]
    shoot(driver, screenshot_dir, "trials")

    # Compare the versions side by side.
    driver.get(f"{console_url}/projects/{project}/compare")
    headers = [h.get_attribute("textContent").strip() for h in find_all(driver, "#compare-table thead th")]
    assert headers[1:] == ["Model 1", "Model 2"]
    training_images = [c.text for c in find_all(driver, "#compare-table tr[data-row=training-images] td")]
    assert int(training_images[1]) > int(training_images[0])
    for metric in ("Precision", "Recall", "F1Score"):
        cells = find_all(driver, f"#compare-table tr[data-metric={metric}] td")
        assert all(re.fullmatch(r"\d+\.\d%", c.text) for c in cells)
    shoot(driver, screenshot_dir, "compare")

    # Stop hosting model 1; the project page lists both models with their metrics.
    driver.get(f"{console_url}/projects/{project}/models/1")
    click_and_load(driver, find(driver, "#stop-model"))
    wait_for_status(driver, "#status", "TRAINED", 120)
    driver.get(f"{console_url}/projects/{project}")
    versions = [r.get_attribute("data-version") for r in find_all(driver, "#model-table tr[data-version]")]
    assert versions == ["2", "1"]
    assert "TRAINED" in text(driver, "#model-table tr[data-version='2']")
    shoot(driver, screenshot_dir, "project")
    driver.get(f"{console_url}/")
    assert find_all(driver, f"#project-table tr[data-project='{project}']")
    shoot(driver, screenshot_dir, "projects")
