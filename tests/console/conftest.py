"""Browser fixtures: a real headless Chromium (Debian's chromium + chromium-driver) driven by Selenium
against the session's emulator, plus small synthetic images on disk to upload from "the computer"."""
from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from emulator.testing import LocalEmulator
from tests.console.console_data import synthetic_image

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
# What the browser tests need, and the Debian package that has it.
BROWSER_PARTS = (("headless Chromium", CHROMIUM, "chromium"), ("chromedriver", CHROMEDRIVER, "chromium-driver"))
# Set to a folder (e.g. docs/screenshots) to keep the workflow's screenshots; a temp dir otherwise.
SCREENSHOT_DIR_ENV = "CONSOLE_SCREENSHOTS"


@pytest.fixture(scope="session")
def browser() -> Iterator[WebDriver]:
    missing = [f"{what} ({path})" for what, path, package in BROWSER_PARTS if not path.exists()]
    if missing:
        packages = " ".join(package for _, path, package in BROWSER_PARTS if not path.exists())
        verb = "is" if len(missing) == 1 else "are"
        pytest.skip(f"the browser tests need {' and '.join(missing)}, which {verb} not installed "
                    f"(apt-get install -y {packages}; .ci/run installs it in CI)")
    profile = tempfile.mkdtemp(prefix="lookout-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def console_url(emulator: LocalEmulator) -> str:
    return f"{emulator.endpoint_url}/console"


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get(SCREENSHOT_DIR_ENV)
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def image_files(tmp_path: Path) -> Callable[[str, int, bool], list[Path]]:
    """Write `count` synthetic images named ``<prefix>-NN.png``; returns their paths."""

    def make(prefix: str, count: int, anomaly: bool) -> list[Path]:
        folder = tmp_path / "images"
        folder.mkdir(exist_ok=True)
        paths = []
        for index in range(count):
            path = folder / f"{prefix}-{index:02d}.png"
            path.write_bytes(synthetic_image(zlib.crc32(path.name.encode()), anomaly))
            paths.append(path)
        return paths

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """When a browser test fails, report where the browser was and what the page said."""
    outcome = yield
    report = outcome.get_result()
    driver = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and driver is not None:
        try:
            page = driver.find_element("css selector", "main").text
        except Exception as exc:  # noqa: BLE001 - the page itself may be what is broken
            page = f"(no page text: {exc.__class__.__name__})"
        report.sections.append(("browser", f"URL: {driver.current_url}\n{page[:3000]}"))
