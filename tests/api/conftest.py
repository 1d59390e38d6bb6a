"""Fixtures of the API tests: the test buckets and a fresh project with its dataset helper."""
from __future__ import annotations

from typing import Any

import pytest

from tests.api.datasets_support import BUCKET, OTHER_BUCKET, DatasetKit


@pytest.fixture(scope="session")
def buckets(s3: Any) -> None:
    for bucket in (BUCKET, OTHER_BUCKET):
        s3.create_bucket(Bucket=bucket)


@pytest.fixture
def kit(lookout: Any, s3: Any, project_name: str, buckets: None) -> DatasetKit:
    lookout.create_project(ProjectName=project_name)
    return DatasetKit(lookout, s3, project_name)
