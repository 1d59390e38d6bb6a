"""An emulator started with a credentials file (a full key and a read-only key), and clients for it."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from emulator.testing import LocalEmulator

FULL = ("AKIDLOOKOUTFULL", "full-secret/with+symbols")
READ_ONLY = ("AKIDLOOKOUTREAD", "read-only-secret")
CREDENTIALS = f"""\
[default]
aws_access_key_id = {FULL[0]}
aws_secret_access_key = {FULL[1]}

[line-pc]
aws_access_key_id = {READ_ONLY[0]}
aws_secret_access_key = {READ_ONLY[1]}
lookout_permissions = read-only
"""


@pytest.fixture(scope="session")
def credentials_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("access") / "credentials"
    path.write_text(CREDENTIALS)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def secured(credentials_file: Path) -> Iterator[LocalEmulator]:
    """The fixture server, started with the credentials file."""
    with LocalEmulator(credentials_file=credentials_file) as server:
        yield server


def make_client(server: LocalEmulator, service: str, key: tuple[str, str], **config: Any) -> Any:
    """A boto3 client signing with `key`; one attempt, so a refusal is seen as it is sent."""
    return boto3.client(service, endpoint_url=server.endpoint_url, region_name=server.settings.region,
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"max_attempts": 1}, **config))


@pytest.fixture(scope="session")
def lookout(secured: LocalEmulator) -> Any:
    return make_client(secured, "lookoutvision", FULL)


@pytest.fixture(scope="session")
def s3(secured: LocalEmulator) -> Any:
    return make_client(secured, "s3", FULL)
