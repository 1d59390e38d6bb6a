"""moto's S3 as the store of several emulators in one process, each with its own clean S3.

moto keeps S3 in process-global state: a backend per account, and one registry of bucket names
that makes names unique across accounts and lets any account reach another's buckets. So each
embedded store gets a moto account of its own (`MotoS3Space`), S3 requests are sent to that account
(moto's ``x-moto-account-id`` header), and the registry is replaced by one that keeps a separate
namespace per account, chosen by the space active in the calling context. A test session can then
run a shared emulator and fresh per-test emulators side by side without them seeing each other.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_active_account: ContextVar[str | None] = ContextVar("lookout_moto_s3_account", default=None)
_install_lock = threading.Lock()


class _NamespacedRegistry(dict):  # type: ignore[type-arg]
    """Stands in for moto's ``s3_backends.bucket_accounts`` (bucket name -> (partition, account)):
    each space sees only its own names; code outside any space (plain moto use) shares one."""

    def __init__(self, existing: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self._namespaces: dict[str | None, dict[str, tuple[str, str]]] = {None: dict(existing)}

    def _names(self) -> dict[str, tuple[str, str]]:
        return self._namespaces.setdefault(_active_account.get(), {})

    def drop_namespace(self, account: str) -> None:
        self._namespaces.pop(account, None)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __getitem__(self, name: str) -> tuple[str, str]:
        return self._names()[name]

    def __setitem__(self, name: str, located: tuple[str, str]) -> None:
        self._names()[name] = located

    def __delitem__(self, name: str) -> None:
        del self._names()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def get(self, name: str, default: Any = None) -> Any:
        return self._names().get(name, default)

    def pop(self, name: str, *default: Any) -> Any:
        return self._names().pop(name, *default)

    def keys(self) -> Any:
        return self._names().keys()

    def items(self) -> Any:
        return self._names().items()

    def values(self) -> Any:
        return self._names().values()

    def clear(self) -> None:
        self._names().clear()


def _registry() -> _NamespacedRegistry:
    from moto.s3.models import s3_backends

    with _install_lock:
        if not isinstance(s3_backends.bucket_accounts, _NamespacedRegistry):
            s3_backends.bucket_accounts = _NamespacedRegistry(s3_backends.bucket_accounts)
        return s3_backends.bucket_accounts


class MotoS3Space:
    """One emulator's private part of moto's S3: an unused moto account and its bucket namespace."""

    def __init__(self) -> None:
        from moto.s3.models import s3_backends

        self._registry = _registry()
        account = f"{secrets.randbelow(10**12):012d}"
        while account in s3_backends:
            account = f"{secrets.randbelow(10**12):012d}"
        self.account = account

    @contextmanager
    def active(self) -> Iterator[None]:
        """Within this block moto's bucket registry is this space's."""
        token = _active_account.set(self.account)
        try:
            yield
        finally:
            _active_account.reset(token)

    def backend(self, partition: str) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[self.account][partition]

    def create_bucket(self, name: str, region: str) -> Any:
        from moto.utilities.utils import get_partition

        with self.active():
            return self.backend(get_partition(region)).create_bucket(name, region)

    def bucket(self, name: str) -> Any | None:
        """Moto's bucket object, or None when this space has no such bucket."""
        with self.active():
            located = self._registry.get(name)
        return None if located is None else self.backend(located[0]).buckets.get(name)

    @staticmethod
    def current_key(bucket: Any, key: str) -> Any | None:
        """The current version of `key` in a moto bucket; None when absent or a delete marker."""
        from moto.s3.models import FakeKey

        found = bucket.keys.get(key)
        return found if isinstance(found, FakeKey) else None

    def discard(self) -> None:
        """Free this space's buckets and objects (moto's own reset would dispose every account's)."""
        from moto.s3.models import s3_backends

        if self.account in s3_backends:
            for backend in s3_backends[self.account].values():
                for bucket in backend.buckets.values():
                    for _, versions in bucket.keys.lists():
                        for version in versions:
                            getattr(version, "dispose", lambda: None)()  # delete markers hold no data
                    for upload in bucket.multiparts.values():
                        upload.dispose()
                backend.buckets.clear()
        self._registry.drop_namespace(self.account)
