"""Small Selenium helpers for the console tests: waiting for what the page shows, not sleeping."""
from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement


def until(condition: Callable[[], Any], timeout: float = 30.0,
          what: str | Callable[[], str] = "the condition") -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds.

    `what` may be a function, called only on failure: describing the page while it may still be
    changing could itself fail."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):  # the page changed under us: look again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(0.1)


def find(driver: WebDriver | WebElement, css: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, css)


def find_all(driver: WebDriver | WebElement, css: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, css)


def text(driver: WebDriver | WebElement, css: str) -> str:
    return find(driver, css).text


def wait_for_status(driver: WebDriver, css: str, status: str, timeout: float = 300) -> None:
    """Wait until the page has settled with `status` in `css`.

    A page in a transition polls its status endpoint, fills in the new status and then loads the
    settled page; only that page (without ``data-poll``) shows everything that comes with the status.
    """
    until(lambda: driver.execute_script("return document.readyState") == "complete"
          and not find_all(driver, "[data-poll]") and find_all(driver, css) and text(driver, css) == status,
          timeout, lambda: f"status {status} in {css} (the page shows {[e.text for e in find_all(driver, css)]})")


def click_and_load(driver: WebDriver, element: WebElement, confirm: bool = False) -> None:
    """Click something that navigates and wait for the new page (accepting a confirm() first)."""
    old = find(driver, "html")
    element.click()
    if confirm:
        until(lambda: _accept_alert(driver), 10, "the confirmation dialog")
    until(lambda: is_stale(old), 60, "the next page to load")
    until(lambda: driver.execute_script("return document.readyState") == "complete", 30, "the page to finish loading")


def _accept_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert.accept()
        return True
    except NoAlertPresentException:
        return False


def is_stale(element: WebElement) -> bool:
    """Whether `element` belongs to a page the browser has left."""
    try:
        element.is_enabled()
        return False
    except (StaleElementReferenceException, NoSuchElementException):
        return True
    except WebDriverException as error:  # asked while the old document was being torn down
        if "does not belong to the document" in str(error):
            return True
        raise


def flash(driver: WebDriver) -> str:
    """The notice or error message the page shows ('' if none)."""
    return " ".join(e.text for e in find_all(driver, ".flash"))


def shoot(driver: WebDriver, folder: Path, name: str) -> Path:
    """Save a screenshot of the whole page, once its images have loaded, as a compact 256-colour PNG."""
    # The shot covers the whole page, so images the page loads lazily (below the fold) must load too;
    # the session's server may hold many projects, each row with a picture.
    driver.execute_script("document.querySelectorAll('img[loading=lazy]').forEach((i) => { i.loading = 'eager'; })")
    until(lambda: driver.execute_script("return [...document.images].every((i) => i.complete)"), 60,
          "the page's images to load")
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path = folder / f"{name}.png"
    image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
    # Octree keeps small areas of distinct colour (a green badge beside a large heatmap) that median
    # cut merges into their neighbours.
    image.quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    return path


def upload_files(driver: WebDriver, zone_css: str, paths: list[Path]) -> None:
    """Choose files in the upload zone's file input, as a user picking them in the file dialog."""
    find(driver, f"{zone_css} input[type=file]").send_keys("\n".join(str(p) for p in paths))


def drop_files(driver: WebDriver, zone_css: str, paths: list[Path]) -> None:
    """Drag and drop files onto an upload zone: the page receives a real `drop` event with the files."""
    payload = [(p.name, base64.b64encode(p.read_bytes()).decode()) for p in paths]
    driver.execute_script("""
        const [selector, files] = arguments;
        const transfer = new DataTransfer();
        for (const [name, data] of files) {
          const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
          transfer.items.add(new File([bytes], name, { type: "image/png" }));
        }
        const zone = document.querySelector(selector);
        for (const type of ["dragover", "drop"]) {
          zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }
    """, zone_css, payload)
