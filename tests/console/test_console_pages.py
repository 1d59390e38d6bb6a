"""Console pages beyond the happy path: segmentation overlays, paging, the service's errors on the
page, project deletion and refused uploads."""
from __future__ import annotations

import io
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

from emulator.console.colours import STATUS_COLOURS, label_colours
from tests.console.console_data import (
    SIDE,
    classification_line,
    create_dataset,
    segmentation_line,
    synthetic_image,
    synthetic_mask,
)
from tests.console.console_support import click_and_load, drop_files, find, find_all, flash, shoot, text, until

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BUCKET = "console-page-tests"
SCRATCH = (0x23, 0xA4, 0x36)


@pytest.fixture
def seeded_project(lookout, s3, project_name):
    """A project whose training dataset (from a manifest) has 25 normal images and one segmented anomaly."""
    s3.create_bucket(Bucket=BUCKET)
    lines = []
    for index in range(25):
        key = f"{project_name}/normal-{index}.png"
        s3.put_object(Bucket=BUCKET, Key=key, Body=synthetic_image(index, False))
        lines.append(classification_line(f"s3://{BUCKET}/{key}", "normal"))
    s3.put_object(Bucket=BUCKET, Key=f"{project_name}/scratch.png", Body=synthetic_image(99, True))
    s3.put_object(Bucket=BUCKET, Key=f"{project_name}/scratch-mask.png", Body=synthetic_mask(99, SCRATCH))
    lines.append(segmentation_line(f"s3://{BUCKET}/{project_name}/scratch.png",
                                   f"s3://{BUCKET}/{project_name}/scratch-mask.png", "scratch", "#23a436"))
    lookout.create_project(ProjectName=project_name)
    create_dataset(lookout, s3, BUCKET, project_name, "train", lines)
    return project_name


def test_dataset_pages_filters_and_mask_overlays(browser, console_url, seeded_project, screenshot_dir):
    driver = browser
    driver.get(f"{console_url}/projects/{seeded_project}/datasets/train")
    names = [t.get_attribute("data-ref").rsplit("/", 1)[1] for t in find_all(driver, ".tile")]
    assert names == [f"normal-{i}.png" for i in range(24)]  # the first page, in natural order
    click_and_load(driver, find(driver, "#next-page"))
    assert len(find_all(driver, ".tile")) == 2 and "Page 2" in text(driver, ".pager")
    assert [t.get_attribute("data-ref").rsplit("/", 1)[1] for t in find_all(driver, ".tile")] == \
        ["normal-24.png", "scratch.png"]

    click_and_load(driver, find(driver, "[data-filter=anomaly]"))
    shoot(driver, screenshot_dir, "dataset-segmentation")
    tile = find(driver, ".tile")
    assert tile.get_attribute("data-ref").endswith("/scratch.png")
    assert "scratch" in text(tile, ".meta")  # the anomaly label's badge
    overlay = find(tile, "img.mask")
    until(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay) == SIDE,
          10, "the mask overlay to load")
    # The overlay is the mask with its background made transparent and the anomaly opaque, painted in
    # the label's display colour: the mask's own green is the console's colour for "normal".
    shown = label_colours(["scratch"])["scratch"]
    assert shown not in STATUS_COLOURS
    badge = find(tile, "[data-label-name=scratch]")
    assert badge.get_attribute("title").lower() == "mask colour #23a436"
    assert driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor", badge) == \
        "rgb({}, {}, {})".format(*(int(shown[i:i + 2], 16) for i in (1, 3, 5)))
    with urllib.request.urlopen(overlay.get_attribute("src")) as reply:
        pixels = np.asarray(Image.open(io.BytesIO(reply.read())))
    assert pixels.shape == (SIDE, SIDE, 4)
    scratch = pixels[..., 3] == 255
    assert scratch.sum() == 14 * 30
    assert (pixels[scratch][:, :3] == [int(shown[i:i + 2], 16) for i in (1, 3, 5)]).all()
    assert (pixels[~scratch][:, 3] == 0).all()

    # The detail view: the full image with the mask as an overlay and the label's share of the image.
    click_and_load(driver, find(tile, "a.open"))
    until(lambda: find(driver, "#viewer").get_attribute("data-ready"), 10, "the image viewer")
    areas = text(driver, "#label-areas")
    assert "scratch" in areas and f"{100 * 14 * 30 / SIDE ** 2:.2f}%" in areas
    assert find(driver, "#stage img.layer[data-layer=truth]").is_displayed()
    driver.get(f"{console_url}/projects/{seeded_project}/datasets/train?filter=anomaly")

    # A single-dataset project needs 20 normal and 10 anomaly images: the button says what is missing.
    assert not find(driver, "#train-button").is_enabled()
    assert "at least 10 images labeled anomaly (it has 1)" in text(driver, "#train-reasons")
    click_and_load(driver, find(driver, "[data-filter=normal]"))
    assert {t.get_attribute("data-label") for t in find_all(driver, ".tile")} == {"normal"}


def test_upload_refuses_files_that_are_not_images(browser, console_url, lookout, project_name, tmp_path):
    lookout.create_project(ProjectName=project_name)
    lookout.create_dataset(ProjectName=project_name, DatasetType="train")
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    driver = browser
    driver.get(f"{console_url}/projects/{project_name}/datasets/train")
    drop_files(driver, "[data-upload]", [notes])
    message = until(lambda: text(driver, "[data-upload-status]").startswith("Upload failed") and
                    text(driver, "[data-upload-status]"), 30, "the upload to fail")
    assert "notes.png" in message and "PNG or JPEG" in message
    assert lookout.describe_dataset(ProjectName=project_name, DatasetType="train")[
        "DatasetDescription"]["ImageStats"]["Total"] == 0


def test_service_errors_are_shown_on_the_page(browser, console_url, project_name):
    driver = browser
    driver.get(f"{console_url}/")
    field = find(driver, "#create-project input[name=name]")
    driver.execute_script("arguments[0].removeAttribute('pattern')", field)  # let the server judge the name
    field.send_keys("not a valid name!")
    click_and_load(driver, find(driver, "#create-project button"))
    assert "failed to satisfy constraint" in flash(driver) and "projectName" in flash(driver)

    for _ in range(2):
        driver.get(f"{console_url}/")
        find(driver, "#create-project input[name=name]").send_keys(project_name)
        click_and_load(driver, find(driver, "#create-project button"))
    assert "already exists" in text(driver, ".flash.error") and project_name in text(driver, ".flash.error")

    driver.get(f"{console_url}/projects/no-such-project-{uuid.uuid4().hex[:6]}")
    assert "does not exist" in text(driver, ".flash.error")


def test_delete_project_from_the_list(browser, console_url, lookout, project_name):
    lookout.create_project(ProjectName=project_name)
    lookout.create_dataset(ProjectName=project_name, DatasetType="train")
    driver = browser
    driver.get(f"{console_url}/")
    row = find(driver, f"#project-table tr[data-project='{project_name}']")
    click_and_load(driver, find(row, "button"), confirm=True)
    assert f"Project {project_name} deleted." in flash(driver)
    assert not find_all(driver, f"#project-table tr[data-project='{project_name}']")
    assert project_name not in [p["ProjectName"] for p in lookout.list_projects()["Projects"]]
