"""A running emulator for tests: ``with LocalEmulator() as emu: emu.client("lookoutvision")``.

The server runs in-process on a free port with a temporary data dir (removed on exit) and its own
clean embedded S3, exactly as ``lookout-emulator serve`` runs it. Give `data_dir` to keep the state
or to restart on it. moto's S3 is process-global, so only one emulator per process can embed S3; a
second one in the same process uses the first as its S3: ``LocalEmulator(s3_endpoint_url=first.endpoint_url)``.

The metadata is in SQLite in the data dir, unless `database_url` names another database (migrated
here, as ``db upgrade`` would) or the environment variable ``LOOKOUT_TEST_DATABASE_URL`` names a
PostgreSQL server's maintenance database: then each emulator gets a fresh database of its own there,
dropped on exit with a temporary data dir, kept (and found again by the next emulator) with a given one.

Trainings run in child processes that `multiprocessing` starts (emulator.training_process), which
import the program's main module again: a script (not pytest) that trains models must start its
emulator under ``if __name__ == "__main__":``, as every program using multiprocessing must.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from emulator.config import DEFAULT_REGION, Settings

TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
TEST_DATABASE_VARIABLE = "LOOKOUT_TEST_DATABASE_URL"
_DATABASE_MARKER = "test-database"  # in a given data dir: the name of its database on that server


class LocalEmulator:
    """Start/stop an emulator server on a background thread."""

    def __init__(self, data_dir: str | Path | None = None, region: str = DEFAULT_REGION,
                 database_url: str | None = None, **settings: Any) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="lookout-"))
        self._maintenance_url = os.environ.get(TEST_DATABASE_VARIABLE) if database_url is None else None
        self._database_name: str | None = None
        self.settings = Settings(data_dir=self.data_dir, port=0, region=region, database_url=database_url, **settings)
        self.endpoint_url = ""

    def __enter__(self) -> LocalEmulator:
        from emulator.server import Server

        try:
            self._prepare_database()
            self.server = Server(self.settings).start()
        except BaseException:
            self._drop_own_database()
            self._remove_own_dir()
            raise
        self.backend = self.server.backend
        self.endpoint_url = self.server.endpoint_url
        return self

    def _prepare_database(self) -> None:
        """Make the test database (with LOOKOUT_TEST_DATABASE_URL) and bring its schema up to date."""
        from emulator.store import Store
        from emulator.store.provision import create_database, database_url

        url = self.settings.database_url
        if self._maintenance_url:
            marker = self.data_dir / _DATABASE_MARKER
            if marker.is_file():  # a data dir an earlier emulator used: the same database, state kept
                self._database_name = marker.read_text().strip()
                url = database_url(self._maintenance_url, self._database_name)
            else:
                self._database_name = f"lookout_test_{uuid.uuid4().hex[:16]}"
                url = create_database(self._maintenance_url, self._database_name)
                self.data_dir.mkdir(parents=True, exist_ok=True)
                marker.write_text(self._database_name)
            self.settings = replace(self.settings, database_url=url)
        if url is not None:
            Store.upgrade(url)

    def client(self, service: str = "lookoutvision", **config: Any) -> Any:
        """A boto3 client for `service` pointed at this emulator (extra kwargs go to botocore Config)."""
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.settings.region,
                            config=Config(**config) if config else None, **TEST_CREDENTIALS)

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._drop_own_database()
        self._remove_own_dir()

    def _drop_own_database(self) -> None:
        if self._own_dir and self._maintenance_url and self._database_name:
            from emulator.store.provision import drop_database

            drop_database(self._maintenance_url, self._database_name)

    def _remove_own_dir(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
