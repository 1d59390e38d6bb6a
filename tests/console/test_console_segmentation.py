"""A segmentation model in the console: per-label metrics, predicted masks over the test results,
and a trial detection whose confirmed anomalies go back to the training dataset with their masks."""
from __future__ import annotations

import json
import re

import pytest

from tests.console.console_data import (
    segmentation_line,
    stage_scratch_datasets,
    synthetic_image,
    synthetic_mask,
)
from tests.console.console_support import click_and_load, find, find_all, flash, shoot, text, until, wait_for_status

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BUCKET = "console-segmentation-tests"
LABEL, COLOUR = "scratch", (0xD6, 0x27, 0x28)


def loaded(driver, image) -> bool:
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", image)


@pytest.fixture
def segmentation_project(lookout, s3, project_name):
    """Separate datasets with the minimums of a segmentation model: 10 normal and 10 scratched images each."""
    put = stage_scratch_datasets(lookout, s3, BUCKET, project_name, lambda put, name, seed: segmentation_line(
        put(f"{name}.png", synthetic_image(seed, True)), put(f"{name}-mask.png", synthetic_mask(seed, COLOUR)),
        LABEL, "#d62728"))
    put("new/normal.png", synthetic_image(900, False))
    put("new/scratched.png", synthetic_image(901, True))
    return project_name


def test_segmentation_model_in_the_console(browser, console_url, segmentation_project, lookout, screenshot_dir):
    driver, project = browser, segmentation_project
    driver.get(f"{console_url}/projects/{project}")
    click_and_load(driver, find(driver, "#train-button"))
    wait_for_status(driver, "#status", "TRAINED")

    rows = [r.text for r in find_all(driver, "#label-metrics tr")]
    assert any(row.startswith(LABEL) for row in rows), rows
    tiles = find_all(driver, "#result-grid .tile")
    assert len(tiles) == 20
    masks = [find(tile, "img.mask") for tile in tiles]  # every test image shows its predicted mask
    until(lambda: all(loaded(driver, m) for m in masks), 20, "the predicted masks to load")
    assert all("EvaluationMasks-" in m.get_attribute("src") for m in masks)
    shoot(driver, screenshot_dir, "model-segmentation")

    # A scratched test image in full: the heatmap, the predicted and the true mask, the label's area.
    scratched = next(t for t in tiles if "scratch" in t.get_attribute("data-ref"))
    click_and_load(driver, find(scratched, "a.open"))
    until(lambda: find(driver, "#viewer").get_attribute("data-ready"), 10, "the image viewer")
    assert {e.get_attribute("data-layer") for e in find_all(driver, "#stage img.layer")} == \
        {"heatmap", "predicted", "truth"}
    area = re.search(rf"{LABEL}\s+(\d+\.\d\d)% of the image", text(driver, "#label-areas"))
    assert area and 0 < float(area.group(1)) < 100, text(driver, "#label-areas")

    driver.get(f"{console_url}/projects/{project}/trials")
    # The name rule is on the form before anything is typed, tied to the field for screen readers.
    name = find(driver, "#trial-form input[name=name]")
    assert name.get_attribute("aria-describedby") == "name-rule"
    assert text(driver, "#name-rule").startswith(
        "Use 1 to 100 letters, digits, hyphens and underscores, starting with a letter or digit")
    name.send_keys("new-parts")
    find(driver, "#trial-form input[name=s3_uri]").send_keys(f"s3://{BUCKET}/{project}/new/")
    click_and_load(driver, find(driver, "#run-trial"))
    wait_for_status(driver, "#trial-status", "COMPLETED", 120)
    scratched = find(driver, "#trial-grid .tile[data-ref$='scratched.png']")
    assert scratched.get_attribute("data-predicted") == "anomaly"
    assert LABEL in text(scratched, ".meta")  # the anomaly label found, with its share of the image
    until(lambda: loaded(driver, find(scratched, "img.mask")), 20, "the trial's mask overlay to load")
    shoot(driver, screenshot_dir, "trial-segmentation")
    click_and_load(driver, find(scratched, "a.open"))
    until(lambda: find(driver, "#viewer").get_attribute("data-ready"), 10, "the image viewer")
    assert LABEL in text(driver, "#label-areas") and find(driver, "#stage img.layer[data-layer=predicted]")
    driver.get(f"{console_url}/projects/{project}/trials/new-parts")
    click_and_load(driver, find(driver, "[data-filter=anomaly]"))
    assert [t.get_attribute("data-ref").rsplit("/", 1)[1] for t in find_all(driver, "#trial-grid .tile")] == \
        ["scratched.png"]
    click_and_load(driver, find(driver, "[data-filter=all]"))

    click_and_load(driver, find(driver, "#verify-all"))
    assert "Verified 2 images." in flash(driver)
    click_and_load(driver, find(driver, "#add-verified"))
    assert "Added 2 verified images to the training dataset." in flash(driver)
    entries = [json.loads(line) for line in lookout.list_dataset_entries(
        ProjectName=project, DatasetType="train", SourceRefContains="/new/")["DatasetEntries"]]
    by_name = {entry["source-ref"].rsplit("/", 1)[1]: entry for entry in entries}
    assert by_name["normal.png"]["anomaly-label-metadata"]["class-name"] == "normal"
    assert "anomaly-mask-ref" not in by_name["normal.png"]
    scratch_entry = by_name["scratched.png"]
    assert scratch_entry["anomaly-label-metadata"]["class-name"] == "anomaly"
    colours = scratch_entry["anomaly-mask-ref-metadata"]["internal-color-map"]
    assert {c["class-name"] for c in colours.values()} == {"BACKGROUND", LABEL}
