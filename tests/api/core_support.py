"""Helpers of the service-core tests (projects, tags, S3, protocol)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator.store import Store, schema, sqlite_url
from emulator.store.provision import create_database, drop_database
from emulator.testing import TEST_CREDENTIALS
from emulator.testing.local import TEST_DATABASE_VARIABLE
from emulator.training_process import PROCESS_NAME

LISTENING = "lookout-emulator listening on "
CLI = [sys.executable, "-m", "emulator.cli"]  # the command line, run from this checkout's interpreter
# Tests that copy, damage or fill metadata.sqlite3 (as kill -9, a bad disk or a full one leaves it): on
# PostgreSQL there is no such file (the store's own tests cover its faults there). A string condition,
# evaluated when the test runs: this module is imported before `--database postgresql` sets the variable.
sqlite_file_only = pytest.mark.skipif(f"os.environ.get({TEST_DATABASE_VARIABLE!r})",
                                      reason="arranges its state in the SQLite metadata file")


@contextmanager
def metadata_of(emulator: Any) -> Iterator[Store]:
    """The metadata store of a stopped emulator, to arrange the state a crash or an older release
    left behind (whichever database it uses)."""
    store = Store.open(emulator.settings.database_url or sqlite_url(emulator.settings.db_path))
    try:
        yield store
    finally:
        store.close()


def stored_model(emulator: Any, project: str, version: int = 1) -> str:
    """Arrange a model version whose training failed, and return its ARN.

    Training a real model costs minutes of CPU on a busy machine; the project and tag rules only
    need a model to exist, so the row CreateModel leaves behind after a failed training is written
    straight into the store.
    """
    arn = emulator.backend.arn(f"model/{project}/{version}")
    with emulator.backend.store.transaction() as db:
        db.execute(schema.models.insert().values(project=project, version=version, arn=arn, status="TRAINING_FAILED",
                                                 status_message="arranged by a test", output_bucket="unused-bucket",
                                                 created_at=emulator.backend.now()))
    return arn


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    """The parsed error response of a botocore ClientError: Error.Code/Message, modeled members
    (ResourceId, ResourceType, ...) and ResponseMetadata."""
    return excinfo.value.response


def raw_request(endpoint_url: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send an unsigned HTTP request (paths under /2020-11-20/ reach the API) and return
    (status, lower-cased headers, body), errors included: for what no SDK would send."""
    request = urllib.request.Request(endpoint_url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


class ServerProcess:
    """``lookout-emulator serve`` in a child process, as users run it; `command` is the argv before
    the serve flags (the console script, or ``python -m emulator.cli``). Its output is collected
    on a thread, so that a chatty server never blocks on a full pipe. With `own_group` it leads a
    session and process group of its own, as a terminal runs a command (Ctrl-C signals the whole
    group), so that `signal_group` reaches its children too (a node's machine dying takes a
    training's child process with it)."""

    def __init__(self, command: list[str], *flags: str, timeout: float = 120, own_group: bool = False) -> None:
        self.process = subprocess.Popen([*command, "serve", "--port", "0", *flags], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=own_group,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        self.arrivals: list[float] = []  # time.monotonic() when each of `lines` was read
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._listening.wait(timeout)
        announced = next((line for line in self.lines if line.startswith(LISTENING)), None)
        if announced is None:
            self._dump_stacks_and_kill()
            raise AssertionError("the server did not start:\n" + self.output)
        self.endpoint_url = announced[len(LISTENING):].strip()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.arrivals.append(time.monotonic())
            self.lines.append(line)
            if line.startswith(LISTENING):
                self._listening.set()
        self._listening.set()  # the process ended: stop waiting

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        """Wait until the output contains `text`; fail with the whole output if it has not within `timeout` s."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not printed within {timeout:.0f} s:\n{self.output}"
            time.sleep(0.05)

    def seen_at(self, text: str) -> float | None:
        """When the first output line containing `text` arrived (time.monotonic()); None before then."""
        return next((self.arrivals[i] for i, line in enumerate(list(self.lines)) if text in line), None)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name="us-east-1", **TEST_CREDENTIALS)

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the server and every process it started (needs `own_group`)."""
        os.killpg(self.process.pid, signum)

    def stop(self, signum: int, timeout: float = 60) -> int:
        """Send `signum` and wait for the process to end; returns its exit status."""
        self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._dump_stacks_and_kill()
            raise AssertionError(f"the server did not end within {timeout} s of signal {signum}:\n"
                                 + self.output) from None
        self._reader.join(10)
        return status

    def _dump_stacks_and_kill(self) -> None:
        """For a server that hangs: where it is stuck (`serve` prints every thread's stack on SIGUSR1,
        emulator.process) into `output`, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(2)
            self.process.kill()
        self._reader.join(10)

    def stop_cleanly(self, signum: int, timeout: float = 60) -> None:
        """`stop`, asserting a clean shutdown (exit status 0), with the server's output if it was not."""
        status = self.stop(signum, timeout)
        assert status == 0, f"the server exited with status {status} after signal {signum}:\n{self.output}"

    def training_process(self, timeout: float = 60) -> int:
        """The pid of a training's child process (emulator.training_process: named in /proc/PID/comm,
        a descendant of the server), once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [pid for pid in _descendants(self.process.pid) if _comm(pid) == TRAINING_PROCESS_NAME]
            if found:
                return found[0]
            assert time.monotonic() < deadline, "no training process started:\n" + self.output
            time.sleep(0.01)


TRAINING_PROCESS_NAME = PROCESS_NAME.decode()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``moto_server`` on a free loopback port, as the external S3 store of servers started with
    ``--s3-endpoint-url``: its URL and process. The test credentials are set as the ``AWS_*``
    variables those servers (this process's, and children) read."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS["aws_secret_access_key"])
    url = f"http://127.0.0.1:{free_port()}"
    moto = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p",
                             url.rsplit(":", 1)[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.2)
        yield url, moto
    finally:
        moto.kill()
        moto.wait(30)


@contextmanager
def migrated_database(maintenance_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of `maintenance_url`, migrated as a deploy does it
    (``lookout-emulator db upgrade`` run once, before any server): its URL; dropped afterwards."""
    name = f"lookout_test_{uuid.uuid4().hex[:16]}"
    url = create_database(maintenance_url, name)
    try:
        upgraded = subprocess.run([*CLI, "db", "upgrade", "--database-url", url], capture_output=True, text=True,
                                  timeout=120)
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        yield url
    finally:
        drop_database(maintenance_url, name)


def fleet_node(tmp_path: Path, name: str, database_url: str, s3_endpoint: str, heartbeat: float,
               *flags: str) -> ServerProcess:
    """One ``serve`` process of a fleet: its own data dir under `tmp_path` (a cache only), the shared
    database and S3 store, as the README's fleet runs it. It leads a process group of its own, so that
    a test can kill it with its children, as its machine dying would."""
    return ServerProcess(CLI, "--data-dir", str(tmp_path / name), "--database-url", database_url,
                         "--s3-endpoint-url", s3_endpoint, "--job-heartbeat", str(heartbeat), *flags, own_group=True)
