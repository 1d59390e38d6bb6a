"""Shared fixtures: a real emulator server per test session, driven through boto3."""
from __future__ import annotations

import contextlib
import os
import uuid

import pytest

from emulator.testing import LocalEmulator
from emulator.testing.local import TEST_DATABASE_VARIABLE
from tests.postgres_cluster import ClusterUnavailable, throwaway_cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--database", choices=("sqlite", "postgresql"), default="sqlite",
                     help="metadata database of the test servers: embedded SQLite (default), or PostgreSQL: "
                          f"the server ${TEST_DATABASE_VARIABLE} names, else a throwaway cluster started for the run")


def pytest_configure(config: pytest.Config) -> None:
    """With `--database postgresql`, start the throwaway cluster before any test server exists."""
    if config.getoption("database") != "postgresql" or os.environ.get(TEST_DATABASE_VARIABLE):
        return
    cluster = contextlib.ExitStack()
    try:
        os.environ[TEST_DATABASE_VARIABLE] = cluster.enter_context(throwaway_cluster())
    except ClusterUnavailable as exc:
        # CI must not pass without the PostgreSQL run; elsewhere say what is missing and stop cleanly.
        pytest.exit(f"--database postgresql: {exc}", returncode=1 if os.environ.get("CI") else 0)
    config.add_cleanup(cluster.close)


@pytest.fixture(scope="session")
def emulator(lookoutvision_server: LocalEmulator) -> LocalEmulator:
    """The session's server from the pytest plugin users get (emulator/testing/pytest_plugin.py), so the
    project's own tests exercise that fixture and a session starts one server, not two."""
    return lookoutvision_server


@pytest.fixture(scope="session")
def lookout(emulator: LocalEmulator):
    return emulator.client("lookoutvision")


@pytest.fixture(scope="session")
def lookout_unvalidated(emulator: LocalEmulator):
    """A client whose own parameter validation is off, to prove the server validates too."""
    return emulator.client("lookoutvision", parameter_validation=False)


@pytest.fixture(scope="session")
def s3(emulator: LocalEmulator):
    return emulator.client("s3")


@pytest.fixture
def project_name() -> str:
    """A fresh project name per test, so tests sharing the session server never collide."""
    return f"test-{uuid.uuid4().hex[:12]}"
