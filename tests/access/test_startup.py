"""`serve --credentials-file` / LOOKOUT_CREDENTIALS_FILE: what the server says at start-up, and
credentials files it refuses to start with."""
from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from werkzeug.test import Client

from emulator.app import create_app
from emulator.cli import build_parser, parse_args
from emulator.config import Settings
from emulator.security.access import CredentialsFileError, KeyRing, startup_notice
from tests.access.access_support import CREDENTIALS, FULL, make_client, refused
from tests.api.core_support import ServerProcess


def test_serve_with_a_credentials_file_says_so_and_requires_signatures(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(CREDENTIALS)
    credentials.chmod(0o600)
    server = ServerProcess([sys.executable, "-m", "emulator.cli"], "--data-dir", str(tmp_path / "data"),
                           "--credentials-file", str(credentials), "--threads", "2")
    try:
        server.wait_for("access control", timeout=30)
        assert (f"access control: requests must be signed (SigV4) with one of 2 access keys from {credentials} "
                "(1 read-only)") in server.output
        assert make_client(server, "lookoutvision", FULL).list_projects()["Projects"] == []
        assert refused(lambda: make_client(server, "lookoutvision", (FULL[0], "wrong-secret-xyz")).list_projects()) == (
            403, "InvalidSignatureException")
    finally:
        server.stop_cleanly(signal.SIGTERM)
    assert "refused GET /2020-11-20/projects from 127.0.0.1: signature (access key AKIDLOOKOUTFULL)" in server.output
    assert FULL[1] not in server.output and "wrong-secret-xyz" not in server.output
    assert "Signature=" not in server.output


def test_the_environment_names_the_credentials_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKOUT_CREDENTIALS_FILE", "/run/secrets/lookout-credentials")
    assert parse_args(build_parser(), ["serve"]).credentials_file == Path("/run/secrets/lookout-credentials")
    monkeypatch.delenv("LOOKOUT_CREDENTIALS_FILE")
    assert parse_args(build_parser(), ["serve"]).credentials_file is None


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                          ("0.0.0.0", True), ("192.0.2.10", True)])
def test_an_open_server_says_so_and_warns_when_other_machines_reach_it(host: str, warned: bool) -> None:
    line, warning = startup_notice(host, None)
    assert line.startswith("access control: none")
    assert (warning is not None) == warned
    if warning:
        assert "WITHOUT access control" in warning and "--credentials-file" in warning and host in warning


@pytest.mark.parametrize("text, message", [
    ("[default]\naws_access_key_id = AKID\n", "has no aws_secret_access_key"),
    ("[default]\nregion = eu-west-1\n", "holds no access key"),
    (("[a]\naws_access_key_id = AKID\naws_secret_access_key = x\n[b]\naws_access_key_id = AKID\n"
      "aws_secret_access_key = y\n"), "appears in [a] and [b]"),
    ("[a]\naws_access_key_id = AKID\naws_secret_access_key = x\nlookout_permissions = admin\n",
     "lookout_permissions must be"),
    ("aws_access_key_id = AKID\n", "is not an AWS shared-credentials file"),
])
def test_unusable_credentials_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "credentials"
    path.write_text(text)
    with pytest.raises(CredentialsFileError) as refusal:
        KeyRing.load(path)
    assert message in str(refusal.value)


@pytest.mark.parametrize("host, banner", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_an_open_console_reachable_from_other_machines_says_so(tmp_path: Path, host: str, banner: bool) -> None:
    """The app as a server bound to `host` would run it (no socket is bound here)."""
    app, backend, _ = create_app(Settings(data_dir=tmp_path, host=host, port=0))
    try:
        page = Client(app).get("/console/", headers={"Host": "localhost"})
        assert page.status_code == 200
        assert ("reachable from other machines and open to anyone" in " ".join(page.text.split())) == banner
    finally:
        backend.close()
