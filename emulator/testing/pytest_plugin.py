"""Pytest fixtures for code that uses Lookout for Vision; installed with the package (``pytest11``).

    def test_inspection(lookoutvision_client, s3_client):
        s3_client.create_bucket(Bucket="images")
        lookoutvision_client.create_project(ProjectName="cookies")

- ``lookoutvision_server`` (session): one emulator (an ``emulator.testing.LocalEmulator``) for the
  whole test session. Starting a server per test would cost more than most tests, so state is
  shared: give resources unique names, or use ``emulator.mock.mock_lookoutvision()`` where a test
  needs a fresh server (projects and S3) of its own.
- ``lookoutvision_emulator``: that server, with the AWS environment variables pointed at it for
  the test, so code under test that calls plain ``boto3.client("lookoutvision")`` reaches it.
- ``lookoutvision_client`` / ``s3_client``: boto3 clients for it.

Heavy imports happen inside the fixtures: pytest loads this module in every session of an
environment where the package is installed.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from emulator.testing.local import LocalEmulator


@pytest.fixture(scope="session")
def lookoutvision_server() -> Iterator[LocalEmulator]:
    from emulator.testing.local import LocalEmulator

    with LocalEmulator() as server:
        yield server


@pytest.fixture
def lookoutvision_emulator(lookoutvision_server: LocalEmulator) -> Iterator[LocalEmulator]:
    from emulator.testing.mock import aws_environment

    with aws_environment(lookoutvision_server):
        yield lookoutvision_server


@pytest.fixture
def lookoutvision_client(lookoutvision_emulator: LocalEmulator) -> Any:
    return lookoutvision_emulator.client("lookoutvision")


@pytest.fixture
def s3_client(lookoutvision_emulator: LocalEmulator) -> Any:
    return lookoutvision_emulator.client("s3")
