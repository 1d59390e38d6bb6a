"""A throwaway PostgreSQL cluster for running the test suite against PostgreSQL.

`pytest --database postgresql` (see tests/conftest.py) starts one cluster for the test session in a
temporary directory, on a free loopback port, with trust authentication (it listens on 127.0.0.1
only and lives as long as the session), and points every test server at it through
`LOOKOUT_TEST_DATABASE_URL`: each server then makes a fresh database of its own there, so tests see
clean state exactly as they do with the embedded SQLite default.

Debian's `postgresql` package provides the binaries (`.ci/run` installs it). `initdb` refuses to run
as root, so as root the cluster is created and run by the `postgres` system user the package adds.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

# What a PostgreSQL cluster needs from the machine, said once for the skip and failure messages.
HOW_TO_INSTALL = "install Debian's postgresql package (apt-get install postgresql), as .ci/run does"
STARTUP_SECONDS = 60  # pg_ctl's own wait for the server to accept connections
SYSTEM_USER = "postgres"  # the account Debian's package creates; initdb refuses root


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (or no user to run them as)."""


def server_bindir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps initdb off the PATH)."""
    versions = [path for path in Path("/usr/lib/postgresql").glob("*/bin") if path.parent.name.isdigit()]
    if versions:
        return max(versions, key=lambda path: int(path.parent.name))
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ClusterUnavailable(f"no PostgreSQL server binaries (initdb) found: {HOW_TO_INSTALL}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_cluster_user(argv: list[str]) -> list[str]:
    """`argv` as the user who may own the cluster: ourselves, or `postgres` when we are root."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser") is None:
        raise ClusterUnavailable("running as root without runuser: cannot start PostgreSQL as another user")
    try:
        import pwd
        pwd.getpwnam(SYSTEM_USER)
    except KeyError as exc:
        raise ClusterUnavailable(f"running as root and there is no {SYSTEM_USER!r} user: {HOW_TO_INSTALL}") from exc
    return ["runuser", "-u", SYSTEM_USER, "--", *argv]


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Start a cluster, yield the SQLAlchemy URL of its maintenance database, stop and delete it."""
    bindir = server_bindir()
    root = Path(tempfile.mkdtemp(prefix="lookout-pg-"))
    datadir, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, SYSTEM_USER)
        shutil.chown(socket_dir, SYSTEM_USER)
    port = _free_port()
    log = root / "server.log"

    def run(*argv: str) -> None:
        subprocess.run(_as_cluster_user([str(bindir / argv[0]), *argv[1:]]), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=STARTUP_SECONDS * 2)

    try:
        run("initdb", "-D", str(datadir), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
        run("pg_ctl", "-D", str(datadir), "-l", str(log), "-w", "-t", str(STARTUP_SECONDS),
            "-o", f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            "start")
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        server_log = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
        shutil.rmtree(root, ignore_errors=True)
        raise ClusterUnavailable(f"could not start PostgreSQL: {' | '.join(detail[-3:] + server_log)}") from exc
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            run("pg_ctl", "-D", str(datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
