"""The ObjectStore: everything the services and the console need of S3, whichever store serves it.

Two implementations (`emulator.s3.stores`): the embedded moto S3 and an external S3-compatible
endpoint. Every method raises `ObjectNotFound`, with a message for the user, when the object or
bucket cannot be read or written.
"""
from __future__ import annotations

from typing import Protocol


class ObjectNotFound(Exception):
    """The object cannot be read or written: it (or its bucket) does not exist, or the store refused
    or could not be reached. The message says which; service code shows it to the user."""


class ObjectMissing(ObjectNotFound):
    """The store answered that the object (or its bucket) does not exist, as opposed to refusing
    or not answering: code that treats absence as a state (no stored artifact yet) catches this."""


class ObjectStore(Protocol):
    """Read manifests and images, write evaluation output and packages, list and create buckets for
    the console."""

    def open(self) -> None:
        """Load what the store keeps between runs (before any request)."""

    def close(self) -> None:
        """Release the store's resources (after the last request and job)."""

    def ping(self) -> str | None:
        """Why the store cannot be used now, or None when it can (readiness probes: quick, and
        raising nothing)."""

    def get(self, bucket: str, key: str) -> bytes: ...

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    def size(self, bucket: str, key: str) -> int: ...

    def delete(self, bucket: str, key: str) -> None:
        """Remove the object; one that (or whose bucket) is already gone is no error, so that a
        deletion run twice is harmless."""

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """The keys under `prefix` in `bucket`, sorted."""

    def create_bucket(self, bucket: str) -> None:
        """Create `bucket` in the store's region unless it exists (idempotent)."""
