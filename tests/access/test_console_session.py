"""The console's sign-in over plain HTTP, on the secured server: where it sends you, what a session
allows, and what a forged or stale cookie gets."""
from __future__ import annotations

import requests

from emulator.testing import LocalEmulator
from tests.access.access_support import FULL, READ_ONLY


def signed_in(server: LocalEmulator, key: tuple[str, str], next_page: str = "") -> requests.Response:
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
