"""Fixtures of the API tests: the test buckets and a fresh project with its dataset helper; for tests of
several ``serve`` processes, a fresh PostgreSQL database and a ``moto_server`` they share."""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.testing.local import TEST_DATABASE_VARIABLE
from tests.api.core_support import migrated_database, moto_server
from tests.api.datasets_support import BUCKET, OTHER_BUCKET, DatasetKit


@pytest.fixture(scope="session")
def buckets(s3: Any) -> None:
    for bucket in (BUCKET, OTHER_BUCKET):
        s3.create_bucket(Bucket=bucket)


@pytest.fixture
def kit(lookout: Any, s3: Any, project_name: str, buckets: None) -> DatasetKit:
    lookout.create_project(ProjectName=project_name)
    return DatasetKit(lookout, s3, project_name)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated as a deploy does it (``db upgrade``). (The server's URL is
    read here, not at import: this module is imported before `--database postgresql` sets it.)"""
    with migrated_database(os.environ[TEST_DATABASE_VARIABLE]) as url:
        yield url


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ``moto_server`` the nodes use as their external S3 store."""
    with moto_server(monkeypatch) as (url, _):
        yield url
