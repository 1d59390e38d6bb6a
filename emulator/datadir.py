"""The data directory's lock: one server per data directory.

Two servers on one data directory would share its SQLite file but not the embedded S3 held in each
process's memory, nor the hosted models, and would drift apart silently. The first server takes an
exclusive `flock` on a lock file inside the directory for as long as it runs; the operating system
releases it when the process ends, `kill -9` included, so a crash never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"


class DataDirInUse(Exception):
    """Another process holds the data directory."""


class DataDirLock:
    """An exclusive lock on `data_dir`, held from construction until `release`."""

    def __init__(self, data_dir: Path) -> None:
        self._fd: int | None = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise DataDirInUse(f"the data directory {data_dir.resolve()} is in use by another lookout-emulator "
                               "server; stop it, or give this one another --data-dir") from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
