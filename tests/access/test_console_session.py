"""The console's sign-in over plain HTTP, on the secured server: where it sends you, what a session
allows, and what a forged or stale cookie gets."""
from __future__ import annotations

import http.client
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from sqlalchemy import delete

from emulator.console.signin import LEGACY_SECRET_FILE, SESSION_SECRET_SETTING
from emulator.store import Store, schema, sqlite_url
from emulator.testing import LocalEmulator
from tests.access.access_support import FULL, READ_ONLY, make_client, unique
from tests.api.core_support import ServerProcess

Server = LocalEmulator | ServerProcess


def signed_in(server: Server, key: tuple[str, str], next_page: str = "") -> requests.Response:
    return requests.post(f"{server.endpoint_url}/console/signin", allow_redirects=False, timeout=30,
                         data={"access_key_id": key[0], "secret_access_key": key[1], "next": next_page})


def test_after_signing_in_only_console_pages_of_this_server_are_destinations(secured: LocalEmulator) -> None:
    assert signed_in(secured, FULL, "/console/projects/x").headers["Location"] == "/console/projects/x"
    assert signed_in(secured, FULL, "/console?tab=models#top").headers["Location"] == "/console?tab=models#top"
    assert signed_in(secured, FULL, "/console/projects/ü").headers["Location"] == "/console/projects/%C3%BC"
    for elsewhere in ("https://attacker.example/", "//attacker.example/console", "/other", "/console\\@x",
                      "/consolex", "/console\r\nSet-Cookie: x=1", "/console/\nx", "/console/ x", "/console/\x7f"):
        response = signed_in(secured, FULL, elsewhere)
        assert response.status_code == 303 and response.headers["Location"] == "/console/", elsewhere
        assert "x=1" not in response.headers.get("Set-Cookie", "")


def test_a_sign_in_link_with_a_header_in_its_next_page_is_harmless(secured: LocalEmulator) -> None:
    link = f"{secured.endpoint_url}/console/signin?next=%2Fconsole%0D%0ASet-Cookie%3A%20x%3D1"
    form = requests.get(link, timeout=30)
    assert form.status_code == 200 and "Set-Cookie" not in form.text and "x=1" not in form.headers.get("Set-Cookie", "")
    posted = requests.post(link, data={"access_key_id": FULL[0], "secret_access_key": FULL[1]}, timeout=30,
                           allow_redirects=False)
    assert posted.status_code == 303 and posted.headers["Location"] == "/console/"


def test_pages_without_a_session_redirect_scripts_get_401(secured: LocalEmulator) -> None:
    page = requests.get(f"{secured.endpoint_url}/console/projects/x?tab=models", allow_redirects=False, timeout=30)
    assert page.status_code == 303 and page.headers["Location"].startswith("/console/signin?next=")
    script = requests.get(f"{secured.endpoint_url}/console/", headers={"Accept": "application/json"}, timeout=30,
                          allow_redirects=False)
    assert script.status_code == 401
    assert requests.get(f"{secured.endpoint_url}/console/static/console.css", timeout=30).status_code == 200


def test_a_forged_or_tampered_cookie_is_no_session(secured: LocalEmulator) -> None:
    cookie = signed_in(secured, FULL).cookies["lookout_console"]
    console = f"{secured.endpoint_url}/console/"
    fine = requests.get(console, cookies={"lookout_console": cookie}, allow_redirects=False, timeout=30)
    assert fine.status_code == 200
    payload, rest = cookie.split(".", 1)
    tampered = payload[:-2] + ("AA" if not payload.endswith("AA") else "BB") + "." + rest
    for forged in (tampered, "eyJrZXlfaWQiOiJBS0lETE9PS09VVEZVTEwifQ.x.y"):
        assert requests.get(console, cookies={"lookout_console": forged}, allow_redirects=False,
                            timeout=30).status_code == 303


def test_a_read_only_session_may_not_post(secured: LocalEmulator) -> None:
    cookie = signed_in(secured, READ_ONLY).cookies["lookout_console"]
    created = requests.post(f"{secured.endpoint_url}/console/projects", data={"name": "ro-console"}, timeout=30,
                            cookies={"lookout_console": cookie}, allow_redirects=False)
    assert created.status_code == 403
    out = requests.post(f"{secured.endpoint_url}/console/signout", cookies={"lookout_console": cookie}, timeout=30,
                        allow_redirects=False)
    assert out.status_code == 303 and "lookout_console=;" in out.headers["Set-Cookie"]


def console(server: Server, cookie: str, method: str = "GET", path: str = "/", **kwargs: Any
             ) -> requests.Response:
    return requests.request(method, f"{server.endpoint_url}/console{path}", cookies={"lookout_console": cookie},
                            allow_redirects=False, timeout=30, **kwargs)


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(secured: LocalEmulator) -> None:
    cookie, other = signed_in(secured, FULL).cookies["lookout_console"], signed_in(secured, FULL).cookies[
        "lookout_console"]
    assert console(secured, cookie).status_code == 200
    assert console(secured, cookie, "POST", "/signout").status_code == 303
    assert console(secured, cookie).status_code == 303  # back to the sign-in page
    assert console(secured, cookie, headers={"Accept": "application/json"}).status_code == 401
    name = unique("after-signout")
    assert console(secured, cookie, "POST", "/projects", data={"name": name}).status_code == 401
    assert name not in [p["ProjectName"] for p in make_client(secured, "lookoutvision", FULL).list_projects(
        MaxResults=100)["Projects"]]
    assert console(secured, other).status_code == 200  # another sign-in of the same key goes on


def test_a_signed_out_session_stays_ended_after_a_restart(credentials_file: Path, tmp_path: Path) -> None:
    with LocalEmulator(tmp_path, credentials_file=credentials_file) as server:
        ended, kept = signed_in(server, FULL).cookies["lookout_console"], signed_in(server, FULL).cookies[
            "lookout_console"]
        assert console(server, ended, "POST", "/signout").status_code == 303
    with LocalEmulator(tmp_path, credentials_file=credentials_file) as server:
        assert console(server, ended).status_code == 303
        assert console(server, kept).status_code == 200


def sign_in_from(address: str, server: Server, key: tuple[str, str]) -> tuple[int, str | None, str]:
    """POST the sign-in form from a loopback `address` of our choice: its status, Retry-After and page."""
    url = urlsplit(server.endpoint_url)
    connection = http.client.HTTPConnection(str(url.hostname), url.port, timeout=30, source_address=(address, 0))
    try:
        connection.request("POST", "/console/signin", urlencode({"access_key_id": key[0], "secret_access_key": key[1]}),
                           {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        return response.status, response.getheader("Retry-After"), response.read().decode()
    finally:
        connection.close()


def test_failed_sign_ins_lock_the_key_and_the_address_out_for_a_while(
        credentials_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lockout = 4.0
    with LocalEmulator(tmp_path, credentials_file=credentials_file, signin_lockout_seconds=lockout) as server:
        with caplog.at_level("WARNING"):
            for _ in range(5):
                assert sign_in_from("127.0.0.1", server, (FULL[0], "guess"))[0] == 401
            status, retry_after, page = sign_in_from("127.0.0.1", server, FULL)  # the right secret, too soon
        assert status == 429 and retry_after is not None and 0 < int(retry_after) <= lockout
        assert "Too many failed sign-ins" in page
        assert any("locked out" in record.getMessage() and FULL[0] in record.getMessage()
                   for record in caplog.records)
        # The key is locked from any address, and any key from the address that guessed.
        assert sign_in_from("127.0.0.2", server, FULL)[0] == 429
        assert sign_in_from("127.0.0.1", server, READ_ONLY)[0] == 429
        assert sign_in_from("127.0.0.2", server, READ_ONLY)[0] == 303
        time.sleep(lockout)
        assert sign_in_from("127.0.0.1", server, FULL)[0] == 303


def test_a_lockout_outlasts_a_restart(credentials_file: Path, tmp_path: Path) -> None:
    with LocalEmulator(tmp_path, credentials_file=credentials_file, signin_lockout_seconds=600) as server:
        for _ in range(5):
            assert sign_in_from("127.0.0.1", server, (FULL[0], "guess"))[0] == 401
    with LocalEmulator(tmp_path, credentials_file=credentials_file, signin_lockout_seconds=600) as server:
        status, retry_after, _ = sign_in_from("127.0.0.2", server, FULL)
        assert status == 429 and retry_after is not None and 500 < int(retry_after) <= 600


def _as_the_previous_release_left_it(server: LocalEmulator) -> bytes:
    """Turn a stopped server's data dir into what the release before the store kept the signing
    secret left: the secret in the data dir's file, none in the store (sessions were already there)."""
    store = Store.open(server.settings.database_url or sqlite_url(server.settings.db_path))
    try:
        secret = bytes.fromhex(str(store.console_settings.get(SESSION_SECRET_SETTING)))
        with store.transaction() as conn:
            settings = schema.console_settings
            conn.execute(delete(settings).where(settings.c.name == SESSION_SECRET_SETTING))
    finally:
        store.close()
    return secret


def test_an_upgraded_data_dir_keeps_its_sessions(credentials_file: Path, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    legacy = tmp_path / LEGACY_SECRET_FILE
    with LocalEmulator(tmp_path, credentials_file=credentials_file) as server:
        cookie = signed_in(server, FULL).cookies["lookout_console"]
    secret = _as_the_previous_release_left_it(server)
    legacy.write_bytes(secret)
    with caplog.at_level("INFO"), LocalEmulator(tmp_path, credentials_file=credentials_file) as server:
        assert console(server, cookie).status_code == 200  # the file's secret was adopted
    assert not legacy.exists()  # the store's copy is the only one now
    assert any("adopted the session signing secret" in record.getMessage() for record in caplog.records)
    assert secret.hex() not in caplog.text
    with LocalEmulator(tmp_path, credentials_file=credentials_file) as server:
        assert console(server, cookie).status_code == 200  # and kept
    _as_the_previous_release_left_it(server)  # without the file, a new secret: the old cookie is no session
    with LocalEmulator(tmp_path, credentials_file=credentials_file) as server:
        assert console(server, cookie).status_code == 303
