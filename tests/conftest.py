"""Shared fixtures: a real emulator server per test session, driven through boto3."""
from __future__ import annotations

import uuid

import pytest

from emulator.testing import LocalEmulator


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
