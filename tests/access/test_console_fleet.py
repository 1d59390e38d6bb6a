"""The console's sign-in on a fleet: two ``serve`` processes with one credentials file, each with its
own data dir, on one PostgreSQL database and one S3 store (a ``moto_server``), as a round-robin
balancer would mix them. A session begun on one node is one on the other, signing out on either
ends it on both, and a guesser's failures count together wherever they land. PostgreSQL only.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from emulator.testing.local import TEST_DATABASE_VARIABLE
from tests.access.access_support import FULL, READ_ONLY
from tests.access.test_console_session import console, sign_in_from, signed_in
from tests.api.core_support import ServerProcess, fleet_node, migrated_database, moto_server
from tests.store.test_store import needs_postgres

pytestmark = needs_postgres


@pytest.fixture
def fleet(tmp_path: Path, credentials_file: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes A and B, started at once (both create the signing secret; one wins, both use it)."""
    with migrated_database(os.environ[TEST_DATABASE_VARIABLE]) as url, moto_server(monkeypatch) as (s3, _):
        with ThreadPoolExecutor(2) as pool:
            starting = [pool.submit(fleet_node, tmp_path, name, url, s3, 1.0, "--credentials-file",
                                    str(credentials_file)) for name in ("a", "b")]
        nodes = [future.result() for future in starting]
        try:
            yield nodes[0], nodes[1]
        finally:
            for node in nodes:
                node.process.kill()
                node.process.wait(30)


def test_a_session_is_one_on_every_node(fleet: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = fleet
    signing_in = signed_in(a, FULL, "/console/")
    assert signing_in.status_code == 303
    cookie = signing_in.cookies["lookout_console"]
    assert console(a, cookie).status_code == 200
    assert console(b, cookie).status_code == 200  # B accepts A's cookie
    assert console(b, cookie, "POST", "/signout").status_code == 303
    assert console(a, cookie).status_code == 303  # signed out on B: A sends it to the sign-in page
    assert console(b, cookie).status_code == 303


def test_failures_on_one_node_lock_out_on_the_other(fleet: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = fleet
    for node in (a, b, a, b):  # spread over the nodes: four failures, none locked yet
        assert sign_in_from("127.0.0.1", node, (FULL[0], "guess"))[0] == 401
    assert sign_in_from("127.0.0.1", a, (FULL[0], "guess"))[0] == 401  # the fifth, on A
    status, retry_after, page = sign_in_from("127.0.0.2", b, FULL)  # the right secret, on B, elsewhere
    assert status == 429 and retry_after is not None and "Too many failed sign-ins" in page
    assert sign_in_from("127.0.0.1", b, READ_ONLY)[0] == 429  # the guessing address too
    assert sign_in_from("127.0.0.2", b, READ_ONLY)[0] == 303
    assert "locked out of signing in" in a.output
