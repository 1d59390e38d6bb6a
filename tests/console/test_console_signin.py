"""Console sign-in in headless Chromium, against an emulator started with a credentials file."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from selenium.webdriver.remote.webdriver import WebDriver

from emulator.testing import LocalEmulator
from tests.access.access_support import CREDENTIALS, FULL, READ_ONLY
from tests.console.console_support import click_and_load, find, find_all, until


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEmulator]:
    credentials = tmp_path_factory.mktemp("console-signin") / "credentials"
    credentials.write_text(CREDENTIALS)
    credentials.chmod(0o600)
    with LocalEmulator(credentials_file=credentials) as server:
        yield server


@pytest.fixture
def signed_out(browser: WebDriver, secured: LocalEmulator) -> Iterator[WebDriver]:
    """The session's browser with no console cookie; none left behind for the other tests either."""
    browser.get(f"{secured.endpoint_url}/console/signin")
    browser.delete_all_cookies()
    yield browser
    browser.delete_all_cookies()


def sign_in(driver: WebDriver, key: tuple[str, str]) -> None:
    find(driver, "input[name=access_key_id]").clear()
    find(driver, "input[name=access_key_id]").send_keys(key[0])
    find(driver, "input[name=secret_access_key]").send_keys(key[1])
    click_and_load(driver, find(driver, "#signin-form button[type=submit]"))


def projects(server: LocalEmulator) -> list[str]:
    client: Any = boto3.client("lookoutvision", endpoint_url=server.endpoint_url, region_name=server.settings.region,
                               aws_access_key_id=FULL[0], aws_secret_access_key=FULL[1])
    return [p["ProjectName"] for p in client.list_projects(MaxResults=100)["Projects"]]


def test_sign_in_session_cookie_and_sign_out(signed_out: WebDriver, secured: LocalEmulator,
                                             caplog: pytest.LogCaptureFixture) -> None:
    driver, console = signed_out, f"{secured.endpoint_url}/console"
    driver.get(f"{console}/")
    until(lambda: "/console/signin" in driver.current_url and find_all(driver, "#signin-form"), 30, "the sign-in page")

    with caplog.at_level("WARNING"):
        sign_in(driver, (FULL[0], "not-the-secret"))
    assert "/console/signin" in driver.current_url and "not right" in find(driver, ".flash.error").text
    assert any(FULL[0] in r.getMessage() and "127.0.0.1" in r.getMessage() for r in caplog.records)
    assert not any("not-the-secret" in r.getMessage() for r in caplog.records)

    sign_in(driver, FULL)
    assert driver.current_url.rstrip("/").endswith("/console") and find(driver, "#signed-in-key").text == FULL[0]
    cookie = driver.get_cookie("lookout_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/console"
    assert 7 * 3600 < cookie["expiry"] - time.time() <= 8 * 3600
    assert "lookout_console" not in driver.execute_script("return document.cookie")  # scripts can't read it

    name = f"signin-{uuid.uuid4().hex[:8]}"
    find(driver, "#create-project input[name=name]").send_keys(name)
    click_and_load(driver, find(driver, "#create-project button[type=submit]"))
    assert name in projects(secured)

    # The cookie is what lets a request in, and even with it another site's post is refused.
    jar = {"lookout_console": cookie["value"]}
    assert requests.get(f"{console}/", cookies=jar, timeout=30, allow_redirects=False).status_code == 200
    foreign = requests.post(f"{console}/projects", data={"name": name + "-x"}, cookies=jar, timeout=30,
                            headers={"Origin": "http://attacker.example"}, allow_redirects=False)
    assert foreign.status_code == 403 and name + "-x" not in projects(secured)
    assert requests.post(f"{console}/projects", data={"name": name + "-y"}, timeout=30,
                         allow_redirects=False).status_code == 401  # no session: nothing created
    assert name + "-y" not in projects(secured)

    click_and_load(driver, find(driver, "#sign-out"))
    assert "/console/signin" in driver.current_url and driver.get_cookie("lookout_console") is None
    driver.get(f"{console}/projects/{name}")
    until(lambda: "/console/signin" in driver.current_url, 30, "the sign-in page again after signing out")


def test_a_read_only_key_looks_but_cannot_change(signed_out: WebDriver, secured: LocalEmulator,
                                                 tmp_path: Path) -> None:
    driver = signed_out
    driver.get(f"{secured.endpoint_url}/console/")
    until(lambda: find_all(driver, "#signin-form"), 30, "the sign-in page")
    sign_in(driver, READ_ONLY)
    assert "(read-only)" in find(driver, ".account").text
    name = f"readonly-{uuid.uuid4().hex[:8]}"
    find(driver, "#create-project input[name=name]").send_keys(name)
    find(driver, "#create-project button[type=submit]").click()
    until(lambda: "read-only" in driver.find_element("css selector", "body").text, 30, "the refusal")
    assert name not in projects(secured)
