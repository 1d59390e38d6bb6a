"""The ``lookout-emulator`` console script: flags, defaults, serving, and clean shutdown."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulator.cli import build_parser, parse_args
from emulator.store.migrate import head
from tests.api.core_support import CLI, ServerProcess, sqlite_file_only
from tests.api.models_support import new_kit

SCRIPT = Path(sys.executable).with_name("lookout-emulator")


def test_serve_flags_and_documented_defaults(monkeypatch):
    for name in ("LOOKOUT_HOST", "LOOKOUT_PORT", "LOOKOUT_DATA_DIR", "LOOKOUT_REGION", "LOOKOUT_ACCOUNT_ID",
                 "LOOKOUT_S3_ENDPOINT_URL", "LOOKOUT_THREADS", "LOOKOUT_BACKBONE", "LOOKOUT_FINETUNE_EPOCHS",
                 "LOOKOUT_FINETUNE_REPEATS", "LOOKOUT_ENGINE_SEED"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args(build_parser(), ["serve"])
    assert (args.host, args.port, str(args.data_dir), args.region, args.account_id, args.s3_endpoint_url,
            args.threads) == ("127.0.0.1", 5010, "lookout-data", "us-east-1", "123456789012", None, 8)
    assert (args.finetune_epochs, args.finetune_repeats, args.engine_seed) == (6, 1, 0)


def test_trusted_proxies_add_up_from_the_variable_and_the_flags(monkeypatch):
    monkeypatch.setenv("LOOKOUT_TRUSTED_PROXIES", "172.16.0.0/12, 192.0.2.1")
    args = parse_args(build_parser(), ["serve", "--trusted-proxy", "2001:db8::/64"])
    assert [str(network) for network in args.trusted_proxies] == ["172.16.0.0/12", "192.0.2.1/32", "2001:db8::/64"]


def test_a_bad_trusted_proxy_variable_is_one_line_and_exit_2():
    line = one_line_refusal(run_cli("serve", env={"LOOKOUT_TRUSTED_PROXIES": "10.0.0.0/8,lb"}))
    assert "environment variable LOOKOUT_TRUSTED_PROXIES: 'lb' is not a network" in line, line


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
    server.stop_cleanly(signal.SIGTERM)
    assert "stopped" in server.output and "Traceback" not in server.output
    assert (tmp_path / "metadata.sqlite3").exists()


def test_sigusr1_prints_every_thread_stack_and_the_server_goes_on(tmp_path):
    """What an operator sends to a server that seems stuck (a shutdown past its deadline prints the same)."""
    server = ServerProcess(CLI, "--data-dir", str(tmp_path))
    server.process.send_signal(signal.SIGUSR1)
    server.wait_for("in serve", timeout=10)  # the main thread's frame, waiting for a stop signal
    assert re.search(r"Thread 0x[0-9a-f]+ \(most recent call first\):\n  File ", server.output), server.output
    assert server.client("lookoutvision").list_projects()["Projects"] == []
    server.stop_cleanly(signal.SIGTERM)


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
    (["--finetune-repeats", "0"], "argument --finetune-repeats: must be 1 to 5, not 0"),
    (["--finetune-repeats", "6"], "argument --finetune-repeats: must be 1 to 5, not 6"),
    (["--engine-seed", "-1"], "argument --engine-seed: must be 0 to 2147483647, not -1"),
    (["--engine-seed", "2147483648"], "argument --engine-seed: must be 0 to 2147483647, not 2147483648"),
    (["--engine-seed", "one"], "argument --engine-seed: 'one' is not a whole number"),
    (["--host", "not a host"], "argument --host: 'not a host' is not an IP address or host name"),
    (["--region", "Mars"], "argument --region: 'Mars' is not a region name"),
    (["--account-id", "12345"], "argument --account-id: '12345' is not a 12-digit account id"),
    (["--backbone", "vgg16"], "argument --backbone: 'vgg16' is not one of efficientnet_lite0"),
    (["--s3-endpoint-url", "minio:9000"], "argument --s3-endpoint-url: 'minio:9000' is not an http://"),
    (["--data-dir", ""], "argument --data-dir: must name a directory"),
    (["--allowed-host", "two words"], "argument --allowed-host: 'two words' is not a host name, .domain or *"),
    (["--trusted-proxy", "10.0.0.1/8"], "argument --trusted-proxy: '10.0.0.1/8' has host bits set: the network is "
                                        "10.0.0.0/8"),
    (["--trusted-proxy", "balancer"], "argument --trusted-proxy: 'balancer' is not a network (CIDR such as "
                                      "10.0.0.0/8 or 2001:db8::/64) or an IP address"),
    (["--database-url", "mysql://db/lookout"], "argument --database-url: the database URL mysql://db/lookout names"),
    (["--database-url", "not a url"], "argument --database-url: 'not a url' is not a database URL"),
    (["--job-kinds", "train,gpu"], "argument --job-kinds: gpu is not a job kind; the kinds are train, dataset, pack"),
    (["--job-kinds", ","], "argument --job-kinds: ',' is not a job kind"),
    (["--job-kinds", "train"], "--job-kinds needs a PostgreSQL --database-url: with the embedded SQLite database"),
    (["--job-kinds", "dataset", "--database-url", "sqlite:///x.db"], "--job-kinds needs a PostgreSQL --database-url"),
    (["--unknown"], "unrecognized arguments: --unknown"),
])
def test_each_bad_flag_is_one_line_and_exit_2(flags, message):
    line = one_line_refusal(run_cli("serve", *flags))
    assert line.startswith("lookout-emulator") and message in line, line


@pytest.mark.parametrize("flags, env", [
    (["--host", "999.1.1.1"], {}),
    (["--host", "nosuch.invalid", "--port", "0"], {}),  # port 0 skips the port check: the host is checked anyway
    ([], {"LOOKOUT_HOST": "nosuch.invalid"}),
])
def test_a_host_that_does_not_resolve_is_refused_before_the_data_dir_is_opened(tmp_path, flags, env):
    line = one_line_refusal(run_cli("serve", "--data-dir", str(tmp_path / "data"), *flags, env=env))
    source = "environment variable LOOKOUT_HOST" if env else "argument --host"
    host = env.get("LOOKOUT_HOST") or flags[1]
    assert f"{source}: '{host}' can't be resolved to an address to listen on" in line, line
    assert not (tmp_path / "data").exists(), "the data directory was opened although the host is bad"


@pytest.mark.parametrize("flags, message", [
    (["--credentials-file", "MISSING"], "cannot read the credentials file MISSING: No such file or directory"),
    (["--tls-cert", "MISSING", "--tls-key", "PRESENT"], "cannot read the TLS certificate MISSING: No such file"),
    (["--tls-cert", "PRESENT", "--tls-key", "MISSING"], "cannot read the TLS private key MISSING: No such file"),
    (["--metrics-token-file", "MISSING"], "cannot read the metrics token file MISSING: "),
])
def test_a_missing_file_is_named_and_refused_before_the_data_dir_is_opened(tmp_path, flags, message):
    """Each file flag names the file it cannot read (a missing key file was "cannot read None") and
    exits 2 like every other bad flag (a missing credentials file exited 1)."""
    paths = {"MISSING": str(tmp_path / "nowhere" / "file.pem"), "PRESENT": str(tmp_path / "present.pem")}
    Path(paths["PRESENT"]).write_text("never parsed: the other file is missing")
    line = one_line_refusal(run_cli("serve", "--port", "0", "--data-dir", str(tmp_path / "data"),
                                    *(paths.get(flag, flag) for flag in flags)))
    assert message.replace("MISSING", paths["MISSING"]) in line, line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("args, message", [
    (["--verison"], "unrecognized arguments: --verison (did you mean --version?)"),
    (["serve", "--hots", "x"], "unrecognized arguments: --hots x (did you mean --host?)"),
    (["edge-agent", "--sockett", "x"], "unrecognized arguments: --sockett x (did you mean --socket?)"),
    (["serve", "--zzz"], "unrecognized arguments: --zzz (see"),  # nothing close: no suggestion
    ([], "the following arguments are required: COMMAND"),
])
def test_an_unknown_option_is_named_before_a_missing_command(args, message):
    assert message in one_line_refusal(run_cli(*args))


def test_db_upgrade_migrates_once_then_changes_nothing(tmp_path):
    first = run_cli("db", "upgrade", "--data-dir", str(tmp_path))
    assert first.returncode == 0 and first.stdout.strip() == "lookout-emulator: the metadata database is at " \
        f"revision {head()} (was none)", (first.stdout, first.stderr)
    again = run_cli("db", "upgrade", env={"LOOKOUT_DATABASE_URL": f"sqlite:///{tmp_path}/metadata.sqlite3"})
    assert again.returncode == 0 and again.stdout.strip().endswith(f"at revision {head()}"), again.stdout


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
        assert f"has schema revision none but this release needs {head()}" in line
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
    ({"LOOKOUT_ENGINE_SEED": "0x10"}, "environment variable LOOKOUT_ENGINE_SEED: '0x10' is not a whole number"),
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


def test_the_engine_seed_and_repeats_reach_the_models_a_server_trains(tmp_path, monkeypatch):
    """`--engine-seed` is what the server's trainings are seeded with, and `--finetune-repeats` what
    they fine-tune with: the model it saves records both (and the variable, as every flag, sets one
    when the flag is absent)."""
    monkeypatch.setenv("LOOKOUT_FINETUNE_REPEATS", "3")
    server = ServerProcess(CLI, "--data-dir", str(tmp_path), "--engine-seed", "7", "--finetune-epochs", "0")
    try:
        kit = new_kit(server.client("lookoutvision"), server.client("s3"), "seeded")
        kit.stage("train", normals=20, anomalies=10, size=(64, 64))
        kit.create_model()
        described = kit.wait_model("1")
        assert described["Status"] == "TRAINED", described["StatusMessage"]
    finally:
        server.stop_cleanly(signal.SIGTERM)
    saved = json.loads((tmp_path / "models" / "seeded" / "1" / "engine" / "model.json").read_text())
    assert (saved["options"]["seed"], saved["options"]["finetune_repeats"]) == (7, 3)


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


def test_a_second_server_on_one_data_dir_exits_at_once(tmp_path):
    """The data directory is locked: a second server on it says which directory and touches nothing."""
    first = ServerProcess([str(SCRIPT)], "--data-dir", str(tmp_path))
    try:
        first.client("lookoutvision").create_project(ProjectName="kept")
        before = sorted((path.name, path.stat().st_size) for path in tmp_path.iterdir() if path.is_file())
        second = run_cli("serve", "--data-dir", str(tmp_path), "--port", "0")
        assert second.returncode == 1, (second.stdout, second.stderr)
        assert "Traceback" not in second.stderr and "listening" not in second.stdout
        assert f"the data directory {tmp_path.resolve()} is in use" in second.stderr.strip()
        after = sorted((path.name, path.stat().st_size) for path in tmp_path.iterdir() if path.is_file())
        assert after == before
        assert [p["ProjectName"] for p in first.client("lookoutvision").list_projects()["Projects"]] == ["kept"]
    finally:
        first.stop_cleanly(signal.SIGTERM)
    # The lock goes with the process: the directory serves again at once.
    again = ServerProcess([str(SCRIPT)], "--data-dir", str(tmp_path))
    try:
        assert [p["ProjectName"] for p in again.client("lookoutvision").list_projects()["Projects"]] == ["kept"]
    finally:
        again.stop(signal.SIGTERM)


# ------------------------------------------------------------------------------- README's flag tables
README = Path(__file__).resolve().parents[2] / "README.md"
# Each command's flag table: the README section it is in.
FLAG_TABLES = {"serve": "## Serving", "edge-agent": "## Running models on a device"}


def readme_flag_table(command: str) -> dict[str, str | None]:
    """Flag -> environment variable, from the first column of the command's table in the README:
    `--flag` (`LOOKOUT_VAR`), or two flags and their two variables in order."""
    text = README.read_text()
    section = text[text.index(FLAG_TABLES[command]):]
    section = section[:section.find("\n## ", 1)]
    documented: dict[str, str | None] = {}
    for row in re.findall(r"^\| `--.*$", section, re.M):
        first_cell = row.split("|")[1]
        flags = re.findall(r"`(--[\w-]+)", first_cell)
        envs = re.findall(r"`(LOOKOUT_\w+)`", first_cell)
        assert len(envs) in (0, len(flags)), f"README row {first_cell.strip()!r}: one variable per flag, in order"
        documented.update(zip(flags, envs or [None] * len(flags), strict=True))
    return documented


def help_flags(command: str) -> dict[str, str | None]:
    """Flag -> environment variable, as `lookout-emulator COMMAND --help` prints them."""
    text = run_cli(command, "--help", env={"COLUMNS": "100"}).stdout
    options = text[text.index("options:"):]
    listed: dict[str, str | None] = {}
    for entry in re.split(r"\n(?=  -)", options)[1:]:  # one entry per option, its help wrapped below it
        flag = re.match(r"\s*(?:-\w, )?(--[\w-]+)", entry)
        env = re.search(r"environment variable (LOOKOUT_\w+)", " ".join(entry.split()))
        if flag and flag.group(1) != "--help":
            listed[flag.group(1)] = env.group(1) if env else None
    return listed


@pytest.mark.parametrize("command", sorted(FLAG_TABLES))
def test_the_readme_flag_table_matches_help(command):
    """The README's table and --help list the same flags with the same variables, so neither can drift:
    a new flag (an Option in emulator/cli.py) needs its row in the README's table, and the other way round."""
    documented, listed = readme_flag_table(command), help_flags(command)
    assert len(listed) >= 8, f"could not read the flags of `{command} --help`: {listed}"
    undocumented = {flag: env for flag, env in listed.items() if flag not in documented}
    assert not undocumented, (
        f"`lookout-emulator {command} --help` has flags the README's table (section {FLAG_TABLES[command]!r}) lacks: "
        + "; ".join(f"add a row | `{flag}` (`{env}`) | default | meaning |" for flag, env in undocumented.items()))
    gone = sorted(set(documented) - set(listed))
    assert not gone, f"the README's {command} table (section {FLAG_TABLES[command]!r}) documents flags " \
                     f"`{command} --help` does not have: {gone}"
    differ = {flag: (documented[flag], env) for flag, env in listed.items() if documented[flag] != env}
    assert not differ, f"README {command} table vs --help, flag: (README's variable, --help's variable): {differ}"


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, just some bytes " * 100)


def _damaged_pages(path: Path) -> None:
    """A real database (a project and a dataset in it) whose pages after the first are overwritten at
    their start: the schema still reads, the tables do not ("database disk image is malformed")."""
    from emulator.testing import LocalEmulator

    with LocalEmulator(data_dir=path.parent) as emu:
        emu.client("lookoutvision").create_project(ProjectName="kept")
        emu.client("lookoutvision").create_dataset(ProjectName="kept", DatasetType="train")
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for start in range(page, len(data), page):
        data[start:start + 16] = b"\xa5" * 16
    path.write_bytes(bytes(data))


@sqlite_file_only
@pytest.mark.parametrize("damage, problem", [(_garbage, "file is not a database"), (_damaged_pages, "malformed")])
def test_a_corrupt_metadata_database_is_one_line_and_left_as_it_was(tmp_path, damage, problem):
    database = tmp_path / "data" / "metadata.sqlite3"
    database.parent.mkdir()
    damage(database)
    before = database.read_bytes()
    result = run_cli("serve", "--port", "0", "--data-dir", str(database.parent))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "listening" not in result.stdout
    line = result.stderr.strip().splitlines()[-1]
    assert f"The metadata database {database} is damaged" in line and problem in line, line
    assert "restore it from a backup" in line
    assert database.read_bytes() == before
