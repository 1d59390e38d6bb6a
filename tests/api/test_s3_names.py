"""S3 bucket and key names are checked by S3's rules before anything touches the data directory:
no request, however its path is spelled, may delete files outside the bucket it names."""
from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from emulator.testing import LocalEmulator


def _send(endpoint_url: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    parts = urlsplit(endpoint_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Length": str(len(body))})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def test_dot_bucket_names_delete_nothing(tmp_path):
    """``PUT /%2e%2e`` once made the mirror remove ``<data-dir>/s3/..``: the whole data directory."""
    with LocalEmulator(data_dir=tmp_path) as emu:
        s3 = emu.client("s3")
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="a.txt", Body=b"A")
        emu.client("lookoutvision").create_project(ProjectName="survivor")
        before = _files(tmp_path)
        for method in ("PUT", "DELETE"):
            for path in ("/%2e%2e", "/%2e", "/%2E%2E/", "/%2e%2e/key", "/%2e/key", "/a%2f..", "/.%2e"):
                status, body = _send(emu.endpoint_url, method, path)
                assert status == 400 and b"<Code>InvalidBucketName</Code>" in body, (method, path, status, body)
                assert _files(tmp_path) == before, (method, path)
        assert s3.get_object(Bucket="kept", Key="a.txt")["Body"].read() == b"A"
        assert [p["ProjectName"] for p in emu.client("lookoutvision").list_projects()["Projects"]] == ["survivor"]


@pytest.mark.parametrize("name", ["UPPER", "under_score", "ab", "a" * 64, "a..b", "192.168.1.1", "-leading",
                                  "trailing-", "xn--punycode", "name-s3alias", "%00bucket", "sp%20ace"])
def test_invalid_bucket_names_are_refused(emulator, name):
    for method in ("PUT", "GET", "DELETE"):
        status, body = _send(emulator.endpoint_url, method, f"/{name}")
        assert status == 400 and b"<Code>InvalidBucketName</Code>" in body, (method, status, body)


def test_overlong_keys_are_refused(s3):
    s3.create_bucket(Bucket="long-keys")
    s3.put_object(Bucket="long-keys", Key="k" * 1024, Body=b"ok")  # S3's limit: 1,024 bytes of UTF-8
    with pytest.raises(s3.exceptions.ClientError) as err:
        s3.put_object(Bucket="long-keys", Key="ü" * 513, Body=b"too long")
    assert err.value.response["Error"]["Code"] == "KeyTooLongError"


def test_the_mirror_never_deletes_outside_its_root(tmp_path):
    """The last line of defence: even a bucket name that slipped past validation cannot make the
    mirror remove anything but a bucket folder directly under ``<data-dir>/s3``."""
    from emulator.s3.mirror import S3Mirror
    from emulator.s3.moto_space import MotoS3Space

    root = tmp_path / "s3"
    root.mkdir()
    (tmp_path / "metadata.sqlite3").write_bytes(b"precious")
    mirror = S3Mirror(root, MotoS3Space())
    for name in ("..", ".", ""):
        with pytest.raises(ValueError):
            mirror.sync_bucket(name)
    for name in ("a/../..", "../s3"):  # quoted into one harmless folder name
        mirror.sync_bucket(name)
    assert (tmp_path / "metadata.sqlite3").read_bytes() == b"precious" and root.is_dir()
