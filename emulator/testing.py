"""A running emulator for tests: ``with LocalEmulator() as emu: emu.client("lookoutvision")``.

The server runs in-process on a free port with a temporary data dir, serves S3 too, and is torn
down on exit, so each test session starts from a clean state.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from emulator.config import Settings

TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class LocalEmulator:
    """Start/stop an emulator server in a background thread."""

    def __init__(self, data_dir: str | Path | None = None, region: str = "us-east-1", **settings: Any) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="lookout-"))
        self.settings = Settings(data_dir=self.data_dir, port=0, region=region, **settings)
        self.endpoint_url = ""

    def __enter__(self) -> "LocalEmulator":
        import waitress

        from emulator.app import create_app

        self.app, self.backend = create_app(self.settings)
        self._server = waitress.create_server(self.app, host=self.settings.host, port=0, threads=8)
        self.endpoint_url = f"http://{self.settings.host}:{self._server.effective_port}"
        self._thread = threading.Thread(target=self._server.run, name="lookout-emulator", daemon=True)
        self._thread.start()
        return self

    def client(self, service: str = "lookoutvision", **config: Any) -> Any:
        """A boto3 client for `service` pointed at this emulator (extra kwargs go to botocore Config)."""
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.settings.region,
                            config=Config(**config) if config else None, **TEST_CREDENTIALS)

    def __exit__(self, *exc: object) -> None:
        self._server.close()
        self._thread.join(timeout=10)
        self.backend.close()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
