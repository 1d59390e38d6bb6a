"""Disk mirror of the embedded S3, so that buckets and objects survive a restart.

moto keeps S3 in memory. After every successful change (an S3 request, or service code writing an
object) the touched key or bucket is written through to ``<data-dir>/s3``, and on start-up the
mirror is loaded back into moto. Each object is one file replaced atomically, so a crash (even
``kill -9``) leaves every object in its old or its new state, never torn. What is mirrored is what
the service needs: buckets and the current version of each object with its metadata (content type,
user metadata, ETag, encryption); bucket configuration (policies, versioning, ...) is not.

Layout::

    s3/<quoted bucket name>/bucket.json       {"name", "region"}
    s3/<quoted bucket name>/objects/<sha256>  one JSON header line, a newline, then the bytes
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from emulator.s3.moto_space import MotoS3Space

log = logging.getLogger(__name__)

# Identity of a moto key version: a changed object is always a new FakeKey with a new timestamp.
KeyIdentity = tuple[int, dt.datetime, int]


def _identity(key: Any) -> KeyIdentity:
    return (id(key), key.last_modified, key.size)


def _write_atomically(path: Path, chunks: list[bytes]) -> None:
    """Replace ``path`` with ``chunks``; on failure (a full disk) the previous file stands and no
    partial copy is left behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class S3Mirror:
    """Keeps ``<data-dir>/s3`` equal to moto's buckets; `restore` loads it back into moto."""

    def __init__(self, root: Path, space: MotoS3Space) -> None:
        self.root = root
        self.space = space
        self._lock = threading.Lock()
        self._written: dict[str, dict[str, KeyIdentity]] = {}  # what the files currently hold

    def _bucket_dir(self, bucket: str) -> Path:
        """The bucket's folder: always a direct child of the mirror's root. Bucket names are checked
        by S3's rules at the door; this refuses anything else (".", "..", "") that would make a write
        or an ``rmtree`` reach beyond the root, e.g. the whole data directory."""
        name = quote(bucket, safe="")
        directory = self.root / name
        if name in ("", ".", "..") or directory.resolve().parent != self.root.resolve():
            raise ValueError(f"refusing S3 mirror path for bucket name {bucket!r}: outside {self.root}")
        return directory

    def _object_path(self, bucket: str, key: str) -> Path:
        return self._bucket_dir(bucket) / "objects" / hashlib.sha256(key.encode()).hexdigest()

    # -- write-through -------------------------------------------------------------------------

    def sync_key(self, bucket: str, key: str) -> None:
        """Make the mirror of one key equal to moto's (written, replaced or removed)."""
        with self._lock:
            found = self.space.bucket(bucket)
            if found is None:
                self._sync_bucket(bucket, None)
                return
            self._save_bucket(found)
            self._sync_key(found, key)

    def sync_bucket(self, bucket: str) -> None:
        """Make the mirror of a whole bucket equal to moto's (after bucket-level requests)."""
        with self._lock:
            self._sync_bucket(bucket, self.space.bucket(bucket))

    def _sync_bucket(self, name: str, bucket: Any | None) -> None:
        if bucket is None:
            shutil.rmtree(self._bucket_dir(name), ignore_errors=True)
            self._written.pop(name, None)
            return
        self._save_bucket(bucket)
        current = [name for name, _ in bucket.keys.items() if self.space.current_key(bucket, name) is not None]
        for key_name in set(self._written.get(name, {})) - set(current):
            self._remove_key(name, key_name)
        for key_name in current:
            self._sync_key(bucket, key_name)

    def _save_bucket(self, bucket: Any) -> None:
        directory = self._bucket_dir(bucket.name)
        if bucket.name in self._written and directory.is_dir():
            return
        (directory / "objects").mkdir(parents=True, exist_ok=True)
        header = {"name": bucket.name, "region": bucket.region_name}
        _write_atomically(directory / "bucket.json", [json.dumps(header).encode()])
        self._written.setdefault(bucket.name, {})

    def _sync_key(self, bucket: Any, key_name: str) -> None:
        key = self.space.current_key(bucket, key_name)
        if key is None:
            self._remove_key(bucket.name, key_name)
            return
        written = self._written.setdefault(bucket.name, {})
        if written.get(key_name) == _identity(key):
            return
        header = {
            "key": key_name,
            "metadata": dict(key.metadata),
            "etag": key.etag.strip('"'),
            "last_modified": key.last_modified.isoformat(),
            "encryption": key.encryption,
            "kms_key_id": key.kms_key_id,
        }
        path = self._object_path(bucket.name, key_name)
        try:
            _write_atomically(path, [json.dumps(header).encode(), b"\n", key.value])
        except OSError:
            self._undo(bucket, key_name, path)
            raise
        written[key_name] = _identity(key)

    def _undo(self, bucket: Any, key_name: str, path: Path) -> None:
        """Moto back to what the mirror holds for a key whose write-through failed: the change is not
        kept anywhere, so no object is visible now that a restart would lose (or bring back)."""
        with self.space.active():
            backend = self.space.backend(bucket.partition)
            if path.is_file():
                self._restore_object(backend, bucket, path)
            else:
                backend.delete_object(bucket.name, key_name)
                self._written.get(bucket.name, {}).pop(key_name, None)

    def _remove_key(self, bucket: str, key: str) -> None:
        self._object_path(bucket, key).unlink(missing_ok=True)
        self._written.get(bucket, {}).pop(key, None)

    # -- start-up ------------------------------------------------------------------------------

    def restore(self) -> None:
        """Load every mirrored bucket and object into the (new, empty) moto space."""
        if not self.root.is_dir():
            return
        with self._lock, self.space.active():
            for directory in sorted(p for p in self.root.iterdir() if (p / "bucket.json").is_file()):
                header = json.loads((directory / "bucket.json").read_text())
                bucket = self.space.create_bucket(header["name"], header["region"])
                backend = self.space.backend(bucket.partition)
                self._written[bucket.name] = {}
                for path in sorted((directory / "objects").glob("*")):
                    if path.suffix == ".tmp":  # a write a crash interrupted; the previous file stands
                        path.unlink()
                        continue
                    self._restore_object(backend, bucket, path)
        log.info("restored %d embedded S3 bucket(s) from %s", len(self._written), self.root)

    def _restore_object(self, backend: Any, bucket: Any, path: Path) -> None:
        with open(path, "rb") as source:
            header = json.loads(source.readline())
            value = source.read()
        key = backend.put_object(bucket.name, header["key"], value, etag=header["etag"],
                                 encryption=header["encryption"], kms_key_id=header["kms_key_id"],
                                 disable_notification=True)
        key.set_metadata(header["metadata"])
        key.last_modified = dt.datetime.fromisoformat(header["last_modified"])
        self._written[bucket.name][header["key"]] = _identity(key)
