"""The mask editor: anomaly masks drawn with real pointer events, saved to S3 and the dataset, read back
through the API and S3, and (slow) a segmentation model trained from masks drawn only in the console."""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.console.console_data import scratch_box, segmentation_line, stage_scratch_datasets, synthetic_image
from tests.console.console_support import click_and_load, find, find_all, shoot, text, until, wait_for_status

pytestmark = [pytest.mark.browser]
BUCKET = "console-mask-editor-tests"
WHITE = 0xFFFFFF


@pytest.fixture
def unlabelled_scratches(lookout, s3, project_name):
    """Train and test datasets of 10 normal images and 10 scratched ones nobody has labelled yet."""
    stage_scratch_datasets(lookout, s3, BUCKET, project_name,
                           lambda put, name, seed: {"source-ref": put(f"{name}.png", synthetic_image(seed, True))})
    return project_name


def editor_url(console_url: str, project: str, dataset_type: str, name: str) -> str:
    return (f"{console_url}/projects/{project}/datasets/{dataset_type}/mask"
            f"?ref=s3://{BUCKET}/{project}/{name}")


def open_editor(driver: WebDriver, url: str | None = None) -> None:
    if url:
        driver.get(url)
    until(lambda: find(driver, "#mask-editor").get_attribute("data-ready"), 20, "the mask editor")


def painted(driver: WebDriver) -> int:
    return int(find(driver, "#mask-editor").get_attribute("data-painted") or 0)


def screen_offset(driver: WebDriver, x: float, y: float) -> tuple[int, int]:
    """Where image pixel (x, y)'s centre is, relative to the centre of the viewer's part in the window
    (WebDriver's origin for offsets from an element; the viewer is scrolled wholly into view first)."""
    x, y = float(x), float(y)
    dx, dy = driver.execute_script("""
        const [x, y] = arguments;
        const viewer = document.getElementById("viewer");
        viewer.scrollIntoView({ block: "nearest" });
        const canvas = document.getElementById("mask-canvas"), box = canvas.getBoundingClientRect();
        const view = viewer.getBoundingClientRect();
        const top = Math.max(0, view.top), bottom = Math.min(window.innerHeight, view.bottom);
        const left = Math.max(0, view.left), right = Math.min(window.innerWidth, view.right);
        return [box.left + (x + 0.5) * box.width / canvas.width - (left + right) / 2,
                box.top + (y + 0.5) * box.height / canvas.height - (top + bottom) / 2];""", x, y)
    return round(dx), round(dy)


def drag(driver: WebDriver, points: list[tuple[float, float]]) -> None:
    """Press at the first image pixel, move through the others and release: real pointer events."""
    viewer = find(driver, "#viewer")
    actions = ActionChains(driver, duration=20)
    actions.move_to_element_with_offset(viewer, *screen_offset(driver, *points[0])).click_and_hold()
    for point in points[1:]:
        actions.move_to_element_with_offset(viewer, *screen_offset(driver, *point))
    actions.release().perform()


def click_at(driver: WebDriver, point: tuple[float, float]) -> None:
    ActionChains(driver).move_to_element_with_offset(find(driver, "#viewer"), *screen_offset(driver, *point)) \
        .click().perform()


def press(driver: WebDriver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def chord(driver: WebDriver, key: str, *modifiers: str) -> None:
    """`key` with `modifiers` held down (Ctrl+Z: ``chord(driver, "z", Keys.CONTROL)``)."""
    actions = ActionChains(driver)
    for modifier in modifiers:
        actions.key_down(modifier)
    actions.send_keys(key)
    for modifier in reversed(modifiers):
        actions.key_up(modifier)
    actions.perform()


def rename_first_label(driver: WebDriver, name: str) -> None:
    """Select the first label's name and type over it, as a person would (an emptied name is refused)."""
    field = find(driver, "#label-list input[type=text]")
    driver.execute_script("arguments[0].select()", field)
    field.send_keys(name, Keys.TAB)


def save(driver: WebDriver) -> None:
    before = int(find(driver, "#mask-editor").get_attribute("data-saved") or 0)
    find(driver, "#save-mask").click()
    until(lambda: int(find(driver, "#mask-editor").get_attribute("data-saved") or 0) > before, 30,
          lambda: f"the save (the page says {find(driver, '#editor-message').text!r})")


def stored_line(lookout, project: str, dataset_type: str, name: str) -> dict[str, Any]:
    entries = [json.loads(e) for e in lookout.list_dataset_entries(
        ProjectName=project, DatasetType=dataset_type)["DatasetEntries"]]
    return next(e for e in entries if e["source-ref"].endswith(f"/{name}"))


def stored_mask(s3, mask_ref: str) -> np.ndarray:
    """The mask PNG the dataset names, as 0xRRGGBB integers."""
    bucket, key = mask_ref.removeprefix("s3://").split("/", 1)
    rgb = np.asarray(Image.open(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())).convert("RGB"))
    return (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]


def scratch_stroke(seed: int) -> list[tuple[float, float]]:
    """A horizontal stroke along the middle of the scratch of ``synthetic_image(seed, True)``."""
    rows, cols = scratch_box(seed)
    middle = (rows.start + rows.stop) / 2 - 0.5
    return [(cols.start + 4, middle), ((cols.start + cols.stop) / 2, middle), (cols.stop - 5, middle)]


def test_draw_save_and_reload_a_mask(browser, console_url, unlabelled_scratches, lookout, s3, screenshot_dir):
    driver, project = browser, unlabelled_scratches
    open_editor(driver, editor_url(console_url, project, "train", "train-scratch-0.png"))
    label_names = [e.get_attribute("value") for e in find_all(driver, "#label-list input[type=text]")]
    assert label_names == ["defect"] and painted(driver) == 0

    # Rename the first label and add a second; key 2 then draws with it.
    rename_first_label(driver, "scratch")
    find(driver, "#new-label-name").send_keys("dent", Keys.ENTER)
    until(lambda: len(find_all(driver, "#label-list li")) == 2, 5, "the new label")
    colours = [e.get_attribute("value").upper() for e in find_all(driver, "#label-list input[type=color]")]
    assert len(set(colours)) == 2 and not {"#FFFFFF", "#000000"} & set(colours)

    # Brush (label 1) along the scratch; undo and redo it.
    driver.execute_script("document.getElementById('viewer').focus()")  # keys for the editor, not a field
    press(driver, "1")
    drag(driver, scratch_stroke(50))
    stroke = painted(driver)
    assert stroke > 100, stroke
    chord(driver, "z", Keys.CONTROL)
    until(lambda: painted(driver) == 0, 5, "undo")
    chord(driver, "z", Keys.CONTROL, Keys.SHIFT)
    until(lambda: painted(driver) == stroke, 5, "redo")

    # A polygon (label 2) in the top-left corner: three clicks and Enter.
    press(driver, "2", "p")
    for corner in ((2, 2), (14, 2), (2, 14)):
        click_at(driver, corner)
    press(driver, Keys.ENTER)
    until(lambda: painted(driver) > stroke + 40, 5, "the polygon's pixels")
    with_polygon = painted(driver)

    # The eraser takes a bite out of the stroke; fill paints a whole region, and undo takes it back.
    press(driver, "e")
    rows, cols = scratch_box(50)
    middle = (rows.start + rows.stop) / 2 - 0.5
    drag(driver, [(cols.stop - 8, middle), (cols.stop - 5, middle)])
    erased = painted(driver)
    assert erased < with_polygon
    press(driver, "f", "1")
    click_at(driver, (80, 90))
    until(lambda: painted(driver) > 96 * 96 / 2, 5, "the fill")
    chord(driver, "z", Keys.CONTROL)
    until(lambda: painted(driver) == erased, 5, "undoing the fill")
    shoot(driver, screenshot_dir, "mask-editor")
    save(driver)

    # What was drawn is what S3 and the dataset hold: the PNG's pixels and the manifest line.
    line = stored_line(lookout, project, "train", "train-scratch-0.png")
    assert line["anomaly-label-metadata"]["class-name"] == "anomaly"
    metadata = line["anomaly-mask-ref-metadata"]
    assert metadata["type"] == "groundtruth/semantic-segmentation"
    colour_map = {item["class-name"]: item["hex-color"].upper() for item in metadata["internal-color-map"].values()}
    assert colour_map == {"BACKGROUND": "#FFFFFF", "scratch": colours[0], "dent": colours[1]}
    mask = stored_mask(s3, line["anomaly-mask-ref"])
    scratch, dent = (int(c[1:], 16) for c in colours)
    assert set(np.unique(mask)) == {WHITE, scratch, dent}
    assert int(np.sum(mask != WHITE)) == erased
    assert mask[int(middle), cols.start + 6] == scratch and mask[4, 4] == dent and mask[90, 80] == WHITE
    assert mask[int(middle), cols.stop - 6] == WHITE  # erased

    # Reloaded, the editor shows the saved mask, and the API agrees on the image's label.
    open_editor(driver, driver.current_url)
    assert painted(driver) == erased
    assert [e.get_attribute("value") for e in find_all(driver, "#label-list input[type=text]")] == ["scratch", "dent"]
    stats = lookout.describe_dataset(ProjectName=project, DatasetType="train")["DatasetDescription"]["ImageStats"]
    assert stats["Anomaly"] == 1 and stats["Labeled"] == 11


def post_mask(driver: WebDriver, labels: Any, pixels: list[list[str]] | None) -> dict[str, Any]:
    """POST a mask from the editor's page (same origin): `pixels` as rows of #RRGGBB, None for no file."""
    return dict(driver.execute_async_script("""
        const [labels, rows, done] = arguments;
        const editor = document.getElementById("mask-editor"), body = new FormData();
        body.append("ref", editor.dataset.ref);
        body.append("labels", typeof labels === "string" ? labels : JSON.stringify(labels));
        const send = async () => {
          if (rows) {
            const canvas = document.createElement("canvas");
            Object.assign(canvas, { width: rows[0].length, height: rows.length });
            const ctx = canvas.getContext("2d");
            rows.forEach((row, y) => row.forEach((colour, x) => { ctx.fillStyle = colour; ctx.fillRect(x, y, 1, 1); }));
            body.append("mask", await new Promise((r) => canvas.toBlob(r, "image/png")), "mask.png");
          }
          const headers = { Accept: "application/json" };
          const reply = await fetch(editor.dataset.save, { method: "POST", body, headers });
          done({ status: reply.status, ...(await reply.json()) });
        };
        send();""", labels, pixels))


def test_bad_masks_are_refused_with_the_reason(browser, console_url, unlabelled_scratches, lookout, s3):
    driver, project = browser, unlabelled_scratches
    open_editor(driver, editor_url(console_url, project, "train", "train-scratch-1.png"))
    white = [["#ffffff"] * 96 for _ in range(96)]
    one = [{"name": "scratch", "colour": "#D62728"}]
    cases = [
        (one, [row[:80] for row in white[:80]], "The mask is 80x80 pixels; the image is 96x96."),
        (one, [["#00ff00"] + row[1:] for row in white], "colours that are no label's, such as #00FF00"),
        ([{"name": f"l{i}", "colour": f"#{i + 1:06X}"} for i in range(21)], white, "at most 20 anomaly labels"),
        ([{"name": "scratch", "colour": "#FFFFFF"}], white, "white and black mean no anomaly"),
        ([{"name": "a", "colour": "#123456"}, {"name": "b", "colour": "#123456"}], white, "its own name and colour"),
        ("not json", white, "labels must be a JSON list"),
        (one, None, "Send the drawn mask as the PNG file field 'mask'."),
    ]
    for labels, pixels, message in cases:
        reply = post_mask(driver, labels, pixels)
        assert reply["status"] == 400 and reply["code"] == "ValidationException", reply
        assert message in reply["error"], (message, reply)
    line = stored_line(lookout, project, "train", "train-scratch-1.png")
    assert set(line) == {"source-ref"}  # nothing of the refused saves reached the dataset

    reply = post_mask(driver, one, white)  # nothing drawn: no mask, the image stays as it was
    assert reply["status"] == 200 and reply["labels"] == {}
    assert set(stored_line(lookout, project, "train", "train-scratch-1.png")) == {"source-ref"}

    s3.delete_object(Bucket=BUCKET, Key=f"{project}/train-scratch-1.png")  # gone from S3 since the import
    reply = post_mask(driver, one, white)
    assert (reply["status"], reply["code"]) == (404, "ResourceNotFoundException"), reply
    assert "is no longer in S3" in reply["error"]


@pytest.mark.slow
def test_train_a_segmentation_model_from_masks_drawn_in_the_console(browser, console_url, unlabelled_scratches,
                                                                    lookout, s3):
    """Every scratch gets its mask in the editor, one image after the other with "Save and next
    unlabelled"; the segmentation model trained on them finds the label."""
    driver, project = browser, unlabelled_scratches
    for dataset_type, offset in (("train", 0), ("test", 100)):
        open_editor(driver, editor_url(console_url, project, dataset_type, f"{dataset_type}-scratch-0.png"))
        for i in range(10):
            assert driver.current_url.endswith(f"{dataset_type}-scratch-{i}.png"), driver.current_url
            rename_first_label(driver, "scratch")
            drag(driver, scratch_stroke(offset + 50 + i))
            if i < 9:
                page = find(driver, "html").id
                find(driver, "#save-next").click()
                until(lambda old=page: old != find(driver, "html").id, 30, "the next unlabelled image")
                open_editor(driver)
            else:
                assert not find_all(driver, "#save-next")  # nothing left to label
                save(driver)
        line = stored_line(lookout, project, dataset_type, f"{dataset_type}-scratch-9.png")
        mask = stored_mask(s3, line["anomaly-mask-ref"])
        rows, cols = scratch_box(offset + 59)
        drawn = np.argwhere(mask != WHITE)
        assert np.all(mask[(rows.start + rows.stop) // 2, cols.start + 6: cols.stop - 6] != WHITE), \
            (rows, cols, drawn.min(axis=0), drawn.max(axis=0))

    driver.get(f"{console_url}/projects/{project}")
    click_and_load(driver, find(driver, "#train-button"))
    wait_for_status(driver, "#status", "TRAINED", 600)
    rows = [r.text for r in find_all(driver, "#label-metrics tr")]
    assert any(row.startswith("scratch") for row in rows), rows

    # The project list shows the project at a glance: its newest model with status and F1, its
    # datasets' counts, and an anomaly image as its picture.
    model = lookout.describe_model(ProjectName=project, ModelVersion="1")["ModelDescription"]
    driver.get(f"{console_url}/")
    row = find(driver, f"#project-table tr[data-project='{project}']")
    latest = text(row, "[data-cell=latest-model]")
    assert "Model 1" in latest and "TRAINED" in latest
    assert text(row, "[data-f1]") == f"{model['Performance']['F1Score'] * 100:.1f}%"
    for dataset_type in ("train", "test"):
        assert text(row, f"[data-dataset={dataset_type}]") == f"{dataset_type}: 20 images (10 normal, 10 anomaly)"
    assert find(row, ".project-thumb img").get_attribute("src").endswith("-scratch-0.png")


def test_dataset_grid_search_sort_and_filter(browser, console_url, unlabelled_scratches):
    driver, project = browser, unlabelled_scratches
    driver.get(f"{console_url}/projects/{project}/datasets/train")

    def names() -> list[str]:
        return [t.get_attribute("data-ref").rsplit("/", 1)[1] for t in find_all(driver, "#image-grid .tile")]

    find(driver, "#search-name").send_keys("SCRATCH-1")  # case does not matter
    click_and_load(driver, find(driver, "#apply-search"))
    assert names() == ["train-scratch-1.png"] and text(driver, "#matching") == "1 image"

    # Sorted by label, the unlabelled images come first; the filter keeps the search and the order.
    search = find(driver, "#search-name")
    search.clear()
    click_and_load(driver, find(driver, "#apply-search"))
    driver.execute_script("document.getElementById('sort-order').value = 'label'")
    click_and_load(driver, find(driver, "#apply-search"))
    assert names()[:10] == [f"train-scratch-{i}.png" for i in range(10)]
    assert names()[10:] == [f"train-normal-{i}.png" for i in range(10)]
    click_and_load(driver, find(driver, "[data-filter=normal]"))
    assert "sort=label" in driver.current_url and names() == [f"train-normal-{i}.png" for i in range(10)]

    # Bulk labelling returns to the same view; an anomaly without a mask is what "needs mask" shows.
    driver.get(f"{console_url}/projects/{project}/datasets/train?q=scratch-2&filter=unlabeled")
    find(driver, "[data-select-all]").click()
    click_and_load(driver, find(driver, "#label-anomaly"))
    assert "q=scratch-2" in driver.current_url and names() == []
    click_and_load(driver, find(driver, "[data-filter=needs-mask]"))
    assert names() == ["train-scratch-2.png"]
    assert find(driver, ".tile .draw-mask").text == "Draw mask"

    driver.get(f"{console_url}/projects/{project}/datasets/train?sort=size")
    assert "Unknown sort order 'size'; use one of name, label." in find(driver, "main").text


def test_a_mask_made_elsewhere_opens_with_its_labels_and_stray_colours_named(browser, console_url,
                                                                             unlabelled_scratches, lookout, s3):
    """A mask from another labelling tool: its label's pixels load as that label; pixels in no
    label's colour (a smoothed edge) are counted on the page, since saving cannot keep them."""
    driver, project = browser, unlabelled_scratches
    pixels = np.full((96, 96, 3), 255, np.uint8)
    pixels[10:20, 10:30] = (0xD6, 0x27, 0x28)
    pixels[20, 10:15] = (0x80, 0x80, 0x80)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG")
    s3.put_object(Bucket=BUCKET, Key=f"{project}/elsewhere-mask.png", Body=out.getvalue())
    prefix = f"s3://{BUCKET}/{project}"
    line = segmentation_line(f"{prefix}/train-scratch-4.png", f"{prefix}/elsewhere-mask.png", "crack", "#d62728")
    lookout.update_dataset_entries(ProjectName=project, DatasetType="train", Changes=json.dumps(line).encode())
    until(lambda: lookout.describe_dataset(ProjectName=project, DatasetType="train")["DatasetDescription"]["Status"]
          == "UPDATE_COMPLETE", 60, "the dataset update")
    open_editor(driver, editor_url(console_url, project, "train", "train-scratch-4.png"))
    assert painted(driver) == 10 * 20
    assert [e.get_attribute("value") for e in find_all(driver, "#label-list input[type=text]")] == ["crack"]
    assert find(driver, "#label-list input[type=color]").get_attribute("value") == "#d62728"
    assert "5 pixels of the saved mask are in no label's colour" in find(driver, "#editor-message").text
