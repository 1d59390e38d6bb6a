"""What an inspection engineer uses on a classification model's page, in headless Chromium: live
training progress, heatmaps over every test image, the threshold what-if, "incorrect only", the
image detail view (zoom, pan, overlays) and Retrain on failed and trained models.

Small synthetic images (96x96) and one trained model shared by the module's tests keep this cheap.
"""
from __future__ import annotations

import io
import json
import re
import urllib.request

import numpy as np
import pytest
from PIL import Image
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from tests.console.console_data import classification_line, create_dataset, synthetic_image
from tests.console.console_support import click_and_load, find, find_all, is_stale, shoot, text, until, wait_for_status

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BUCKET = "console-inspection-tests"
# What the model page shows while a model trains, in the order a live line lists them.
LIVE_FIGURES = ("#stage", "#percent-done", "#elapsed", "#time-left", "#status-message")


def stage_datasets(lookout, s3, project: str, missing: bool = False) -> None:
    """Separate datasets with the classification minimums: 10 normal training images, 10 normal and
    10 scratched test images. With `missing`, one training image's object is deleted after import,
    so that training fails at once (cheaply) naming it."""
    s3.create_bucket(Bucket=BUCKET)
    lookout.create_project(ProjectName=project)
    for dataset_type, offset, anomalies in (("train", 0, 0), ("test", 100, 10)):
        lines = []
        for index in range(10 + anomalies):
            anomaly = index >= 10
            key = f"{project}/{dataset_type}-{'scratch' if anomaly else 'normal'}-{index}.png"
            s3.put_object(Bucket=BUCKET, Key=key, Body=synthetic_image(offset + index, anomaly))
            lines.append(classification_line(f"s3://{BUCKET}/{key}", "anomaly" if anomaly else "normal"))
        create_dataset(lookout, s3, BUCKET, project, dataset_type, lines)
    if missing:
        s3.delete_object(Bucket=BUCKET, Key=f"{project}/train-normal-3.png")


def metric(driver, css: str) -> float:
    return float(text(driver, css).rstrip("%"))


@pytest.fixture(scope="module")
def trained(browser, console_url, lookout, s3):
    """A classification model trained from its project page, watching the live progress on the way."""
    project = "inspection-classification"
    stage_datasets(lookout, s3, project)
    driver = browser
    driver.get(f"{console_url}/projects/{project}")
    click_and_load(driver, find(driver, "#train-button"))
    assert text(driver, "#status") == "TRAINING"
    # Live: the training job's stage and the elapsed time, counted up while training runs.
    assert text(driver, "#stage")
    stages = {text(driver, "#stage")}
    lines: set[str] = set()
    # A quick training (a loaded machine can delay the page's first count) may end before the elapsed time shows.
    elapsed = until(lambda: "settled" if text(driver, "#status") != "TRAINING" else
                    re.fullmatch(r"(\d+):(\d\d) elapsed", text(driver, "#elapsed")), 60,
                    "the elapsed time to show or the training to end")
    first = 0 if elapsed == "settled" else int(elapsed.group(1)) * 60 + int(elapsed.group(2))

    def counted_or_settled() -> str | None:
        """'counted' once the page has counted the elapsed time up while the model trains; 'settled'
        when a quick training ended first (the settled page no longer shows live figures)."""
        line = _live_line(driver)
        if line is None or text(driver, "#status") != "TRAINING":
            return "settled"
        stages.add(line.split(" | ", 1)[0])
        lines.add(line)
        now = re.fullmatch(r"(\d+):(\d\d) elapsed", line.split(" | ")[2])
        return "counted" if now and int(now.group(1)) * 60 + int(now.group(2)) > first else None

    watched = elapsed != "settled" and until(counted_or_settled, 60,
                                             "the elapsed time to count up or the training to end") == "counted"
    if watched:
        until(lambda: (line := _live_line(driver)) is None or text(driver, "#status") != "TRAINING"
              or not line.startswith("copying"), 60, "a training stage after copying")
        line = _live_line(driver)  # None when the training ended meanwhile and the page has settled
        if line is not None:
            lines.add(line)
        shoot(driver, _screens(), "model-training") if _screens() else None
    wait_for_status(driver, "#status", "TRAINED")
    assert stages - {""}, stages
    # One progress figure while it trains: the share done (no step counts, no second percentage in the
    # status message), then the elapsed time and an estimate of the time left.
    live = [line for line in lines if "% done" in line]
    assert live or not watched, lines
    for line in live:
        assert re.fullmatch(r"[a-z ,-]+ \| \d+% done \| \d+:\d\d elapsed \| (estimating the time left|"
                            r"less than a minute left|about \d+ minutes? left) \| ", line), line
    return project


def _live_line(driver) -> str | None:
    """The page's live progress figures in one line, or None once the page has settled: a settled page
    shows none of them, and it replaces the live one whenever the training ends, even between two reads."""
    try:
        return " | ".join(text(driver, css) for css in LIVE_FIGURES)
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def _screens():
    import os
    from pathlib import Path

    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    return Path(folder) if folder else None


def test_heatmaps_over_a_classification_models_test_results(browser, console_url, trained):
    driver = browser
    driver.get(f"{console_url}/projects/{trained}/models/1")
    tiles = find_all(driver, "#result-grid .tile")
    assert len(tiles) == 20
    assert find(driver, "#result-grid").get_attribute("data-layer") == "heatmap"  # no masks: heatmaps shown
    heatmaps = [find(tile, "img.heatmap") for tile in tiles]
    until(lambda: all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", h) == 96
                      for h in heatmaps), 20, "the heatmaps to load")
    assert all("EvaluationHeatmaps-" in h.get_attribute("src") and h.is_displayed() for h in heatmaps)

    def opaque_share(tile) -> float:
        with urllib.request.urlopen(find(tile, "img.heatmap").get_attribute("src")) as reply:
            pixels = np.asarray(Image.open(io.BytesIO(reply.read())))
        assert pixels.shape == (96, 96, 4)
        return float((pixels[..., 3] > 128).mean())

    flagged = [t for t in tiles if "anomaly" in text(t, "[data-predicted]")]
    passed = [t for t in tiles if "normal" in text(t, "[data-predicted]")]
    assert flagged and passed
    # Where the model flags an image, its map shows where; an image it passes shows (almost) nothing.
    assert min(opaque_share(t) for t in flagged) > max(opaque_share(t) for t in passed)

    find(driver, "[data-layer-controls] input[value=none]").click()
    assert not any(h.is_displayed() for h in heatmaps)
    find(driver, "[data-layer-controls] input[value=heatmap]").click()
    assert all(h.is_displayed() for h in heatmaps)


def test_threshold_slider_and_incorrect_only(browser, console_url, trained, screenshot_dir):
    driver = browser
    driver.get(f"{console_url}/projects/{trained}/models/1")
    assert text(driver, "#model-threshold") == "0.50"
    # At the model's own threshold the what-if reproduces the model's metrics and counts.
    for name in ("precision", "recall", "f1"):
        assert text(driver, f"#whatif-{name}") == text(driver, f"#{name}"), name
    correct, incorrect = int(text(driver, "#correct-count")), int(text(driver, "#incorrect-count"))
    assert (int(text(driver, "#whatif-correct")), int(text(driver, "#whatif-incorrect"))) == (correct, incorrect)
    scores = sorted(float(t.get_attribute("data-score")) for t in find_all(driver, "#result-grid .tile"))
    assert len(scores) == 20 and all(0 <= s <= 1 for s in scores)
    shoot(driver, screenshot_dir, "threshold")

    slider = find(driver, "#threshold-slider")
    slider.send_keys(Keys.HOME)  # threshold 0: every image is called anomalous
    assert text(driver, "#threshold-value") == "0.00"
    assert (text(driver, "#whatif-recall"), text(driver, "#whatif-precision")) == ("100.0%", "50.0%")
    assert (text(driver, "#whatif-correct"), text(driver, "#whatif-incorrect")) == ("10", "10")
    tiles = find_all(driver, "#result-grid .tile")
    assert sum(t.get_attribute("data-correct") == "true" for t in tiles) == 10
    assert all("anomaly" in text(t, "[data-predicted]") for t in tiles)
    assert text(driver, "#incorrect-count") == "10"

    find(driver, "#incorrect-only").click()  # only the 10 normal images are wrong now
    shown = [t for t in tiles if t.is_displayed()]
    assert len(shown) == 10 and {t.get_attribute("data-actual") for t in shown} == {"normal"}

    # Other thresholds: the counts and metrics follow the images' scores.
    truth = [(float(t.get_attribute("data-score")), t.get_attribute("data-actual")) for t in tiles]
    for threshold in (0.25, 0.75, 0.95):
        driver.execute_script("const s = arguments[0]; s.value = arguments[1]; s.dispatchEvent(new Event('input'))",
                              slider, threshold)
        called = [(score >= threshold, actual == "anomaly") for score, actual in truth]
        right = sum(flagged == anomalous for flagged, anomalous in called)
        tp = sum(flagged and anomalous for flagged, anomalous in called)
        assert (int(text(driver, "#whatif-correct")), int(text(driver, "#whatif-incorrect"))) == (right, 20 - right)
        assert metric(driver, "#whatif-recall") == pytest.approx(100 * tp / 10, abs=0.05)
        assert len([t for t in tiles if t.is_displayed()]) == 20 - right
        assert all(t.get_attribute("data-correct") == "false" for t in tiles if t.is_displayed())

    find(driver, "#threshold-reset").click()
    assert text(driver, "#threshold-value") == "0.50" and text(driver, "#whatif-f1") == text(driver, "#f1")
    assert len([t for t in tiles if t.is_displayed()]) == incorrect
    find(driver, "#incorrect-only").click()
    assert all(t.is_displayed() for t in tiles)
    find(driver, "#training-report summary").click()
    assert re.search(r"Scorer chosen \w+", text(driver, "#training-report"))


def evaluation_verdicts(lookout, s3, project: str, version: str) -> list[tuple[str, str]]:
    """(truth, verdict) of each test image, read from the evaluation manifest in S3 as a boto3 user would."""
    return [(truth, verdict) for _, truth, verdict in evaluation_lines(lookout, s3, project, version)]


def evaluation_lines(lookout, s3, project: str, version: str) -> list[tuple[str, str, str]]:
    """(source-ref, truth, verdict) of each test image in the model's evaluation manifest."""
    location = lookout.describe_model(ProjectName=project, ModelVersion=version)["ModelDescription"][
        "EvaluationManifest"]
    body = s3.get_object(Bucket=location["Bucket"], Key=location["Key"])["Body"].read().decode()
    pairs = []
    for line in map(json.loads, filter(None, body.splitlines())):
        truth = next(value["class-name"] for name, value in line.items() if name.endswith("-metadata")
                     and not name.startswith("anomaly-label-detected") and isinstance(value, dict)
                     and value.get("type") == "groundtruth/image-classification")
        pairs.append((line["source-ref"], truth, line["anomaly-label-detected-metadata"]["class-name"]))
    return pairs


def test_model_page_in_plain_words(browser, console_url, trained, lookout, s3):
    """The threshold in plain words, the confusion matrix and the charts, checked against counts
    computed from the evaluation output."""
    driver = browser
    driver.get(f"{console_url}/projects/{trained}/models/1")
    pairs = evaluation_verdicts(lookout, s3, trained, "1")
    caught, missed = pairs.count(("anomaly", "anomaly")), pairs.count(("anomaly", "normal"))
    alarms, passed = pairs.count(("normal", "anomaly")), pairs.count(("normal", "normal"))
    assert text(driver, "#plain-summary") == (
        f"Images scoring 0.50 or more are flagged as anomalous. On the test set this caught {caught} of "
        f"{caught + missed} defects and flagged {alarms} of {alarms + passed} good parts.")
    cells = {c.get_attribute("data-cell"): c.text for c in find_all(driver, "#confusion-matrix td")}
    assert cells == {"caught": f"{caught} caught", "missed": f"{missed} missed", "passed": f"{passed} passed",
                     "false-alarms": f"{alarms} false alarm{'' if alarms == 1 else 's'}"}
    performance = lookout.describe_model(ProjectName=trained, ModelVersion="1")["ModelDescription"]["Performance"]
    assert performance["Recall"] == pytest.approx(caught / (caught + missed))

    # The technical rule is folded away until asked for.
    assert not find(driver, "#threshold-rule").is_displayed()
    find(driver, "#threshold-details summary").click()
    assert find(driver, "#threshold-rule").is_displayed()

    # The histogram counts every test image and has a count axis; the precision/recall curve marks
    # the model's own point.
    titles = [t.get_attribute("textContent") for t in find_all(driver, "#score-histogram rect title")]
    bars = [re.match(r"(\d+) ", title) for title in titles]
    assert sum(int(b.group(1)) for b in bars if b) == len(pairs)
    ticks = [t.text for t in find_all(driver, "#score-histogram text.tick")]
    assert "0" in ticks and "Test images" in text(driver, "#score-histogram")
    point = find(driver, "#pr-current")
    assert float(point.get_attribute("data-recall")) == pytest.approx(performance["Recall"])
    assert float(point.get_attribute("data-precision")) == pytest.approx(performance["Precision"])
    # Each tile names its number once: the anomaly score (the confidence repeats it).
    meta = text(driver, "#result-grid .tile .meta")
    assert "%" not in meta and re.search(r"Anomaly score [01]\.\d\d", meta)


def test_image_detail_view_zoom_pan_and_overlay(browser, console_url, trained, screenshot_dir):
    driver = browser
    driver.get(f"{console_url}/projects/{trained}/models/1")
    tile = next(t for t in find_all(driver, "#result-grid .tile") if "scratch" in t.get_attribute("data-ref")
                and "anomaly" in text(t, "[data-predicted]"))
    ref = tile.get_attribute("data-ref")
    click_and_load(driver, find(tile, "a.open"))
    viewer = find(driver, "#viewer")
    until(lambda: viewer.get_attribute("data-ready"), 10, "the image viewer")
    assert text(driver, ".wrap-name").replace("\n", "") == ref
    facts = text(driver, "#image-facts")
    for fact in ("Actual label", "Predicted label", "Confidence", "Anomaly score"):
        assert fact in facts
    assert re.search(r"Confidence \d+\.\d%", facts) and re.search(r"Anomaly score [01]\.\d{3}", facts)

    def zoom() -> float:
        return float(viewer.get_attribute("data-zoom"))

    fitted = zoom()
    assert fitted > 2  # a 96-pixel image is enlarged to fill the viewer
    find(driver, "#zoom-in").click()
    assert zoom() == pytest.approx(fitted * 1.5, rel=1e-3)
    find(driver, "#zoom-actual").click()
    assert zoom() == pytest.approx(1.0) and text(driver, "#zoom-level") == "100%"
    driver.execute_script("arguments[0].dispatchEvent(new WheelEvent('wheel', {deltaY: -100, clientX: 200, "
                          "clientY: 200, bubbles: true, cancelable: true}))", viewer)
    assert zoom() == pytest.approx(1.25)
    before = find(driver, "#stage").value_of_css_property("transform")
    ActionChains(driver).move_to_element(viewer).click_and_hold().move_by_offset(40, 25).release().perform()
    after = find(driver, "#stage").value_of_css_property("transform")
    numbers = [[float(n) for n in re.findall(r"-?[\d.]+", matrix)] for matrix in (before, after)]
    shift = [a - b for a, b in zip(numbers[1][4:], numbers[0][4:], strict=True)]  # matrix(a, b, c, d, tx, ty)
    assert shift == [pytest.approx(40, abs=1), pytest.approx(25, abs=1)]
    find(driver, "#zoom-fit").click()
    assert zoom() == pytest.approx(fitted)

    heatmap = find(driver, "#stage img.layer[data-layer=heatmap]")
    assert heatmap.is_displayed()
    opacity = find(driver, "#overlay-opacity")
    opacity.send_keys(Keys.END)
    assert heatmap.value_of_css_property("opacity") == "1"
    opacity.send_keys(Keys.HOME)
    assert heatmap.value_of_css_property("opacity") == "0"
    opacity.send_keys(*[Keys.RIGHT] * 60)
    find(driver, "input[name=layer][value=none]").click()
    assert not heatmap.is_displayed()
    find(driver, "input[name=layer][value=heatmap]").click()
    shoot(driver, screenshot_dir, "detail")
    # The arrow keys step through the test images.
    title = text(driver, "h1")
    key = Keys.ARROW_RIGHT if find_all(driver, "#next-image") else Keys.ARROW_LEFT
    old = find(driver, "html")
    find(driver, "h1").click()  # out of the overlay's radio buttons, where arrows choose the overlay
    ActionChains(driver).send_keys(key).perform()
    until(lambda: is_stale(old) and text(driver, "h1") != title, 20, "the next image's page")
    assert re.fullmatch(r"Test image \d+ of 20", text(driver, "h1"))


def test_retrain_a_trained_model(browser, console_url, trained, lookout):
    driver = browser
    driver.get(f"{console_url}/projects/{trained}/models/1")
    click_and_load(driver, find(driver, "#retrain"))
    assert text(driver, "h1") == "Model 2" and text(driver, "#status") == "TRAINING"
    assert "Training model 2 started." in text(driver, ".flash")
    wait_for_status(driver, "#status", "TRAINED")


def test_compare_models_by_the_images_where_they_disagree(browser, console_url, trained, lookout, s3,
                                                          screenshot_dir):
    """A model retrained after scratched parts were wrongly added as normal misses scratches model 1
    catches: the compare page shows exactly the images where the two evaluation manifests differ."""
    driver = browser
    wrong = []
    for index in range(10):
        key = f"{trained}/mislabelled-scratch-{index}.png"
        s3.put_object(Bucket=BUCKET, Key=key, Body=synthetic_image(300 + index, True))
        wrong.append(json.dumps(classification_line(f"s3://{BUCKET}/{key}", "normal")))
    lookout.update_dataset_entries(ProjectName=trained, DatasetType="train", Changes="\n".join(wrong).encode())
    until(lambda: lookout.describe_dataset(ProjectName=trained, DatasetType="train")["DatasetDescription"]["Status"]
          == "UPDATE_COMPLETE", 60, "the dataset update")
    driver.get(f"{console_url}/projects/{trained}/models/1")
    click_and_load(driver, find(driver, "#retrain"))
    version = text(driver, "h1").removeprefix("Model ")
    wait_for_status(driver, "#status", "TRAINED")

    first = {ref: (truth, verdict) for ref, truth, verdict in evaluation_lines(lookout, s3, trained, "1")}
    second = {ref: (truth, verdict) for ref, truth, verdict in evaluation_lines(lookout, s3, trained, version)}
    differ = sorted(ref for ref in first if ref in second and first[ref][1] != second[ref][1])
    assert differ, "the mislabelled training data changed no verdict"
    driver.get(f"{console_url}/projects/{trained}/compare?a=1&b={version}")
    tiles = find_all(driver, "#disagreement-grid .tile")
    assert sorted(t.get_attribute("data-ref") for t in tiles) == differ
    wins = sum(first[ref][1] == first[ref][0] for ref in differ)
    assert text(driver, "[data-wins='1']") == str(wins)
    assert text(driver, f"[data-wins='{version}']") == str(len(differ) - wins)
    assert f"judged {len(differ)} of the {len(first)} test images they share differently" in \
        text(driver, "#disagreement-summary")
    for tile in tiles:  # each side: that model's verdict and its anomaly map
        ref = tile.get_attribute("data-ref")
        for model, results in (("1", first), (version, second)):
            side = find(tile, f"figure[data-model='{model}']")
            assert text(side, "[data-predicted]") == results[ref][1]
            assert "EvaluationHeatmaps-" in find(side, "img.heatmap").get_attribute("src")
    shoot(driver, screenshot_dir, "compare-disagreements")


def test_retrain_a_failed_model(browser, console_url, lookout, s3, project_name):
    stage_datasets(lookout, s3, project_name, missing=True)
    driver = browser
    driver.get(f"{console_url}/projects/{project_name}")
    click_and_load(driver, find(driver, "#train-button"))
    wait_for_status(driver, "#status", "TRAINING_FAILED", 120)
    assert "train-normal-3.png" in text(driver, "#status-message")
    button = find(driver, "#retrain")
    assert button.is_enabled() and "primary" in button.get_attribute("class")
    click_and_load(driver, button)
    assert text(driver, "h1") == "Model 2"
    wait_for_status(driver, "#status", "TRAINING_FAILED", 120)
    assert [m["ModelVersion"] for m in lookout.list_models(ProjectName=project_name)["Models"]] == ["2", "1"] or \
        sorted(m["ModelVersion"] for m in lookout.list_models(ProjectName=project_name)["Models"]) == ["1", "2"]
