"""The ``lookout-emulator`` console script: flags, defaults, serving, and clean shutdown."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.cli import build_parser, parse_args
from tests.api.core_support import ServerProcess

SCRIPT = Path(sys.executable).with_name("lookout-emulator")


def test_serve_flags_and_documented_defaults(monkeypatch):
    for name in ("LOOKOUT_HOST", "LOOKOUT_PORT", "LOOKOUT_DATA_DIR", "LOOKOUT_REGION", "LOOKOUT_ACCOUNT_ID",
                 "LOOKOUT_S3_ENDPOINT_URL", "LOOKOUT_THREADS", "LOOKOUT_BACKBONE", "LOOKOUT_FINETUNE_EPOCHS"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args(build_parser(), ["serve"])
    assert (args.host, args.port, str(args.data_dir), args.region, args.account_id, args.s3_endpoint_url,
            args.threads) == ("127.0.0.1", 5010, "lookout-data", "us-east-1", "123456789012", None, 8)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert args.finetune_epochs == 6
    for flag in ("--host", "--port", "--data-dir", "--s3-endpoint-url", "--region", "--account-id", "--threads",
                 "--credentials-file", "--tls-cert", "--tls-key", "--finetune-epochs", "--device", "--database-url"):
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
    assert f"web console: {server.endpoint_url}/console/" in server.output
    assert server.stop(signal.SIGTERM) == 0
    assert "stopped" in server.output and "Traceback" not in server.output
    assert (tmp_path / "metadata.sqlite3").exists()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
    return subprocess.run([sys.executable, "-m", "emulator.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, timeout=60)


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """A refused command line: exit status 2, one line on stderr, no traceback, nothing served."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "listening" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("flags, message", [
    (["--port", "99999"], "argument --port: 99999 is not a port number (0 to 65535)"),
    (["--port", "-1"], "argument --port: -1 is not a port number"),
    (["--port", "http"], "argument --port: 'http' is not a port number"),
    (["--port"], "argument --port: expected one argument"),
    (["--threads", "0"], "argument --threads: must be 1 to 256, not 0"),
    (["--threads", "many"], "argument --threads: 'many' is not a whole number"),
    (["--finetune-epochs", "201"], "argument --finetune-epochs: must be 0 to 200, not 201"),
    (["--finetune-epochs", "1.5"], "argument --finetune-epochs: '1.5' is not a whole number"),
    (["--host", "not a host"], "argument --host: 'not a host' is not an IP address or host name"),
    (["--region", "Mars"], "argument --region: 'Mars' is not a region name"),
    (["--account-id", "12345"], "argument --account-id: '12345' is not a 12-digit account id"),
    (["--backbone", "vgg16"], "argument --backbone: 'vgg16' is not one of efficientnet_lite0"),
    (["--s3-endpoint-url", "minio:9000"], "argument --s3-endpoint-url: 'minio:9000' is not an http://"),
    (["--data-dir", ""], "argument --data-dir: must name a directory"),
    (["--allowed-host", "two words"], "argument --allowed-host: 'two words' is not a host name, .domain or *"),
    (["--database-url", "mysql://db/lookout"], "argument --database-url: the database URL mysql://db/lookout names"),
    (["--database-url", "not a url"], "argument --database-url: 'not a url' is not a database URL"),
    (["--unknown"], "unrecognized arguments: --unknown"),
])
def test_each_bad_flag_is_one_line_and_exit_2(flags, message):
    line = one_line_refusal(run_cli("serve", *flags))
    assert line.startswith("lookout-emulator") and message in line, line


def test_db_upgrade_migrates_once_then_changes_nothing(tmp_path):
    first = run_cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert first.returncode == 0 and first.stdout.strip() == "lookout-emulator: the metadata database is at " \
        "revision 0001 (was none)", (first.stdout, first.stderr)
    again = run_cli("db", "upgrade", env={"LOOKOUT_DATABASE_URL": f"sqlite:///{tmp_path}/metadata.sqlite3"})
    assert again.returncode == 0 and again.stdout.strip().endswith("at revision 0001"), again.stdout


def test_a_metadata_file_that_is_no_database_is_one_line(tmp_path):
    (tmp_path / "metadata.sqlite3").write_bytes(b"scrambled" * 1000)
    result = run_cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"lookout-emulator: The metadata database {tmp_path}/metadata.sqlite3 is damaged (file "
                           "is not a database). Nothing was changed"), line


@pytest.mark.skipif(not os.environ.get("LOOKOUT_TEST_DATABASE_URL"), reason="LOOKOUT_TEST_DATABASE_URL is not set: "
                    "no PostgreSQL server to test on")
def test_a_server_on_a_postgres_schema_behind_refuses_to_start(tmp_path):
    from emulator.store.provision import create_database, drop_database

    maintenance = os.environ["LOOKOUT_TEST_DATABASE_URL"]
    url = create_database(maintenance, "lookout_test_cli_behind")
    try:
        line = one_line_refusal(run_cli("serve", "--port", "0", "--data-dir", str(tmp_path), "--database-url", url))
        assert "has schema revision none but this release needs 0001" in line
        assert "run: lookout-emulator db upgrade --database-url URL" in line
        assert run_cli("db", "upgrade", "--database-url", url).returncode == 0
    finally:
        drop_database(maintenance, "lookout_test_cli_behind")


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    line = one_line_refusal(run_cli("serve", "--data-dir", str(tmp_path / "file")))
    assert "exists and is not a directory" in line
    assert not (tmp_path / "file" / "metadata.sqlite3").exists()


@pytest.mark.parametrize("env, message", [
    ({"LOOKOUT_PORT": "70000"}, "environment variable LOOKOUT_PORT: 70000 is not a port number"),
    ({"LOOKOUT_PORT": "abc"}, "environment variable LOOKOUT_PORT: 'abc' is not a port number"),
    ({"LOOKOUT_THREADS": "-3"}, "environment variable LOOKOUT_THREADS: must be 1 to 256"),
    ({"LOOKOUT_FINETUNE_EPOCHS": "-1"}, "environment variable LOOKOUT_FINETUNE_EPOCHS: must be 0 to 200"),
    ({"LOOKOUT_BACKBONE": "vgg16"}, "environment variable LOOKOUT_BACKBONE: 'vgg16' is not one of"),
    ({"LOOKOUT_REGION": "x"}, "environment variable LOOKOUT_REGION: 'x' is not a region name"),
    ({"LOOKOUT_ALLOWED_HOSTS": "ok.example,bad name"}, "environment variable LOOKOUT_ALLOWED_HOSTS: 'bad name'"),
])
def test_bad_environment_variables_are_refused_like_flags(env, message):
    assert message in one_line_refusal(run_cli("serve", env=env))


def test_a_flag_wins_over_its_environment_variable(monkeypatch):
    monkeypatch.setenv("LOOKOUT_PORT", "6000")
    monkeypatch.setenv("LOOKOUT_REGION", "eu-west-1")
    args = parse_args(build_parser(), ["serve", "--port", "6001"])
    assert (args.port, args.region) == (6001, "eu-west-1")


def test_version_and_plain_text_help():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip().startswith("lookout-emulator 0.")
    top = run_cli("--help").stdout
    assert "serve" in top and "``" not in top and "`" not in top
    serve_help = run_cli("serve", "--help").stdout
    assert "`" not in serve_help
    for env in ("LOOKOUT_HOST", "LOOKOUT_PORT", "LOOKOUT_DATA_DIR", "LOOKOUT_S3_ENDPOINT_URL", "LOOKOUT_REGION",
                "LOOKOUT_ACCOUNT_ID", "LOOKOUT_BACKBONE", "LOOKOUT_ALLOWED_HOSTS", "LOOKOUT_THREADS"):
        assert f"environment variable {env}" in " ".join(serve_help.split()), env
    refused = one_line_refusal(run_cli())
    assert "the following arguments are required: COMMAND" in refused


def test_a_port_in_use_is_found_before_the_data_dir_is_opened(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert not (tmp_path / "data").exists(), "the data directory was opened although the port is taken"
    assert time.monotonic() - started < 30


def test_console_link_for_a_wildcard_host():
    from emulator.cli import console_url

    assert console_url("http://0.0.0.0:5010", "0.0.0.0") == "http://127.0.0.1:5010/console/"
    assert console_url("http://127.0.0.1:5010", "127.0.0.1") == "http://127.0.0.1:5010/console/"
