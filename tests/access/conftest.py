"""An emulator started with a credentials file (a full key and a read-only key), and clients for it."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from emulator.testing import LocalEmulator
from tests.access.access_support import CREDENTIALS, FULL, make_client


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


@pytest.fixture(scope="session")
def lookout(secured: LocalEmulator) -> Any:
    return make_client(secured, "lookoutvision", FULL)


@pytest.fixture(scope="session")
def s3(secured: LocalEmulator) -> Any:
    return make_client(secured, "s3", FULL)
