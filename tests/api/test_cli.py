"""The ``lookout-emulator`` console script: flags, defaults, serving, and clean shutdown."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.cli import build_parser
from tests.api.core_support import ServerProcess

SCRIPT = Path(sys.executable).with_name("lookout-emulator")


def test_serve_flags_and_documented_defaults(monkeypatch):
    for name in ("LOOKOUT_HOST", "LOOKOUT_PORT", "LOOKOUT_DATA_DIR", "LOOKOUT_REGION", "LOOKOUT_ACCOUNT_ID",
                 "LOOKOUT_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, str(args.data_dir), args.region, args.account_id, args.s3_endpoint_url,
            args.threads) == ("127.0.0.1", 5010, "lookout-data", "us-east-1", "123456789012", None, 8)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for flag in ("--host", "--port", "--data-dir", "--s3-endpoint-url", "--region", "--account-id", "--threads",
                 "--credentials-file", "--tls-cert", "--tls-key"):
        assert f"`{flag}" in readme, f"{flag} is not documented in the README"


def test_console_script_serves_until_sigterm(tmp_path):
    assert SCRIPT.exists(), f"{SCRIPT} is missing: install the package (pip install -e .)"
    help_text = subprocess.run([str(SCRIPT), "serve", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--s3-endpoint-url" in help_text and "default 127.0.0.1" in help_text
    server = ServerProcess([str(SCRIPT)], "--data-dir", str(tmp_path), "--region", "eu-west-1",
                           "--account-id", "111122223333", "--threads", "2")
    assert server.endpoint_url.startswith("http://127.0.0.1:")
    arn = server.client("lookoutvision").create_project(ProjectName="cli")["ProjectMetadata"]["ProjectArn"]
    assert arn == "arn:aws:lookoutvision:eu-west-1:111122223333:project/cli"
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in server.output and "Traceback" not in server.output
    assert (tmp_path / "metadata.sqlite3").exists()


@pytest.mark.parametrize("flags, message", [
    (["--threads", "0"], "--threads must be at least 1"),
    (["--port", "http"], "invalid int value"),
])
def test_bad_flags_are_refused(flags, message):
    result = subprocess.run([sys.executable, "-m", "emulator.cli", "serve", *flags], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr
