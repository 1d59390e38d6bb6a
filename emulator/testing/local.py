"""A running emulator for tests: ``with LocalEmulator() as emu: emu.client("lookoutvision")``.

The server runs in-process on a free port with a temporary data dir (removed on exit) and its own
clean embedded S3, exactly as ``lookout-emulator serve`` runs it. Give `data_dir` to keep the state
or to restart on it. moto's S3 is process-global, so only one emulator per process can embed S3; a
second one in the same process uses the first as its S3: ``LocalEmulator(s3_endpoint_url=first.endpoint_url)``.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from emulator.config import DEFAULT_REGION, Settings

TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class LocalEmulator:
    """Start/stop an emulator server on a background thread."""

    def __init__(self, data_dir: str | Path | None = None, region: str = DEFAULT_REGION, **settings: Any) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="lookout-"))
        self.settings = Settings(data_dir=self.data_dir, port=0, region=region, **settings)
        self.endpoint_url = ""

    def __enter__(self) -> LocalEmulator:
        from emulator.server import Server

        try:
            self.server = Server(self.settings).start()
        except BaseException:
            self._remove_own_dir()
            raise
        self.backend = self.server.backend
        self.endpoint_url = self.server.endpoint_url
        return self

    def client(self, service: str = "lookoutvision", **config: Any) -> Any:
        """A boto3 client for `service` pointed at this emulator (extra kwargs go to botocore Config)."""
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.settings.region,
                            config=Config(**config) if config else None, **TEST_CREDENTIALS)

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._remove_own_dir()

    def _remove_own_dir(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
