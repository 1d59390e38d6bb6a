"""What a client is told when the data directory cannot take a write.

Every writer under the data dir (the metadata store, the S3 mirror, training's copies and model files)
meets a full disk as an OSError with errno ENOSPC (the store turns SQLite's "database or disk is full"
into one), so the API, the embedded S3 and background jobs all word it alike, and never with the
server's own paths.
"""
from __future__ import annotations

import errno
from typing import TypeGuard

_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> TypeGuard[OSError]:
    """Whether ``exc`` is a write refused for lack of space (or quota)."""
    return isinstance(exc, OSError) and exc.errno in _FULL


DISK_FULL = "the disk of the emulator's data directory is full"


def write_failure(exc: OSError) -> str:
    """A client's message for a request whose write to the data directory failed with ``exc``."""
    if is_disk_full(exc):
        return f"{DISK_FULL.capitalize()}; nothing was changed. Free space there, then retry."
    return f"The emulator could not write to its data directory ({exc.strerror or type(exc).__name__})."
