"""Cross-site protection on the one port: the API, the embedded S3 and the console refuse state-changing
requests a browser marks as coming from another site, and every request whose Host is not a name the
server answers to (DNS rebinding). SDKs, which send no Origin, keep working."""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from emulator.testing import LocalEmulator

FOREIGN = ("http://attacker.example", "null", "https://localhost.attacker.example")


def send(endpoint_url: str, method: str, path: str, body: bytes = b"", **headers: str) -> tuple[int, bytes]:
    parts = urlsplit(endpoint_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Length": str(len(body)), **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def project_names(lookout) -> list[str]:
    return [p["ProjectName"] for p in lookout.list_projects()["Projects"]]


@pytest.mark.parametrize("origin", FOREIGN)
def test_cross_site_api_posts_are_refused(emulator, lookout, project_name, origin):
    body = json.dumps({"ProjectName": project_name}).encode()
    status, raw = send(emulator.endpoint_url, "POST", "/2020-11-20/projects", body,
                       **{"Content-Type": "text/plain", "Origin": origin})
    assert status == 403 and json.loads(raw)["message"].startswith("Cross-site requests are refused"), raw
    assert project_name not in project_names(lookout)


def test_cross_site_without_origin_is_refused(emulator, lookout, project_name):
    body = json.dumps({"ProjectName": project_name}).encode()
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Referer": "http://attacker.example/page"}):
        assert send(emulator.endpoint_url, "POST", "/2020-11-20/projects", body, **headers)[0] == 403
    assert project_name not in project_names(lookout)


@pytest.mark.parametrize("origin", FOREIGN)
def test_cross_site_s3_form_uploads_are_refused(emulator, s3, origin):
    s3.create_bucket(Bucket="cross-site-tests")
    boundary = "b0undary"
    form = (f'--{boundary}\r\nContent-Disposition: form-data; name="key"\r\n\r\nplanted.txt\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\nowned\r\n'
            f"--{boundary}--\r\n").encode()
    status, raw = send(emulator.endpoint_url, "POST", "/cross-site-tests", form, Origin=origin,
                       **{"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 403 and b"<Code>AccessDenied</Code>" in raw, raw
    assert "Contents" not in s3.list_objects_v2(Bucket="cross-site-tests")
    assert send(emulator.endpoint_url, "PUT", "/cross-site-tests/k", b"x", Origin=origin)[0] == 403


@pytest.mark.parametrize("origin", FOREIGN)
def test_cross_site_console_posts_are_refused(emulator, lookout, project_name, origin):
    body = f"name={project_name}".encode()
    status, _ = send(emulator.endpoint_url, "POST", "/console/projects", body, Origin=origin,
                     **{"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403
    assert project_name not in project_names(lookout)


def test_same_site_and_sdk_requests_work(emulator, lookout, project_name):
    port = urlsplit(emulator.endpoint_url).port
    body = json.dumps({"ProjectName": project_name}).encode()
    status, _ = send(emulator.endpoint_url, "POST", "/2020-11-20/projects", body,
                     **{"Content-Type": "application/json", "Origin": f"http://localhost:{port}"})
    assert status == 200
    lookout.delete_project(ProjectName=project_name)  # boto3: no Origin


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:80", "127.0.0.1.nip.io", "localhost.evil"])
def test_foreign_host_headers_are_refused(emulator, host):
    """DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1 reads nothing."""
    status, raw = send(emulator.endpoint_url, "GET", "/2020-11-20/projects", Host=host)
    assert status == 403 and b"not a name this server answers to" in raw, raw
    assert send(emulator.endpoint_url, "GET", "/console/", Host=host)[0] == 403
    assert send(emulator.endpoint_url, "GET", "/", Host=host)[0] == 403  # S3 ListBuckets


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:5010", "127.0.0.1:1", "[::1]:5010", "bucket.localhost:9"])
def test_loopback_host_headers_are_answered(emulator, host):
    assert send(emulator.endpoint_url, "GET", "/2020-11-20/projects", Host=host)[0] != 403  # <bucket>.localhost: S3


def test_allowed_hosts_are_configurable():
    with LocalEmulator(allowed_hosts=("lookout.internal", ".corp.example")) as emu:
        for host in ("lookout.internal:5010", "a.corp.example", "localhost"):
            assert send(emu.endpoint_url, "GET", "/2020-11-20/projects", Host=host)[0] == 200, host
        assert send(emu.endpoint_url, "GET", "/2020-11-20/projects", Host="other.example")[0] == 403
        status, _ = send(emu.endpoint_url, "POST", "/2020-11-20/projects", b'{"ProjectName": "p"}',
                         Origin="http://lookout.internal:8080", **{"Content-Type": "application/json"})
        assert status == 200
    with LocalEmulator(allowed_hosts=("*",)) as emu:
        assert send(emu.endpoint_url, "GET", "/2020-11-20/projects", Host="anything.example")[0] == 200
        status, _ = send(emu.endpoint_url, "POST", "/2020-11-20/projects", b'{"ProjectName": "q"}',
                         Host="anything.example", Origin="http://evil.example")
        assert status == 403


def test_serve_flag_and_environment_variable(monkeypatch):
    from emulator.cli import build_parser, parse_args

    monkeypatch.setenv("LOOKOUT_ALLOWED_HOSTS", "a.example, b.example")
    args = parse_args(build_parser(), ["serve", "--allowed-host", "c.example"])
    assert [name.strip() for name in args.allowed_hosts] == ["a.example", "b.example", "c.example"]
