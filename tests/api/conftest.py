"""Fixtures of the API tests: the test buckets and a fresh project with its dataset helper; for tests of
several ``serve`` processes, a fresh PostgreSQL database and a ``moto_server`` they share."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emulator.store import Store
from emulator.store.provision import create_database, drop_database
from emulator.testing.local import TEST_DATABASE_VARIABLE
from tests.api.core_support import moto_server
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
    maintenance_url = os.environ[TEST_DATABASE_VARIABLE]
    name = f"lookout_test_{uuid.uuid4().hex[:16]}"
    url = create_database(maintenance_url, name)
    Store.upgrade(url)
    yield url
    drop_database(maintenance_url, name)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ``moto_server`` the nodes use as their external S3 store."""
    with moto_server(monkeypatch) as (url, _):
        yield url
