"""Model artifacts in the object store, with the data dir only a cache of them.

Several nodes share one database and one S3 store, each with a data dir of its own, so a model
trained on one node must load on every other. Training therefore publishes the engine artifact
(the files ``model.save`` writes under ``models/<project>/<version>/engine``) to the object store,
and every load (hosting, trial detection, packaging, the console's model page) goes through
`local_engine`, which fetches it into the local cache when the cache lacks it or differs from it.

Where: the system bucket ``lookout-emulator-artifacts-<account id>`` of the emulator's account (one
per account, so emulators of different accounts sharing an S3 store never meet), under
``models/<project>/<version>/``: ``engine/<file>`` for each artifact file and ``manifest.json``
last, naming every file with its SHA-256. The manifest is written after the files it names, so a
manifest that exists describes a whole artifact; a second run of the same training writes the same
keys again (and removes files the new artifact no longer has). No user bucket is touched, and the
system bucket is an ordinary bucket users can see but need not know about.

The cache is checked against the manifest by hashing (a load is rare, DetectAnomalies never reads
S3). A fetch writes into a temporary folder beside the cache, verifies every file, then renames it
into place, so that a crash leaves the old cache or the new one, never half of either.

Data dirs of the releases before this one have artifacts only on local disk: a load finding no
manifest publishes the local artifact (and start-up does it for every trained model), so nothing
is lost and other nodes can load it from then on.

A model's training plan (`emulator.services.training_plan`) is kept under the same prefix, so that
a node that did not receive CreateModel can resume the training after a restart.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import uuid
from pathlib import Path, PurePosixPath

from emulator.api.statuses import ModelStatus
from emulator.backend import Backend, per_backend
from emulator.s3.objects import ObjectMissing, ObjectNotFound
from emulator.services.lookups import engine_dir

log = logging.getLogger(__name__)

_MANIFEST = "manifest.json"
_ENGINE = "engine/"
_SCRATCH = ".engine-fetch-"  # folders beside the cache that a fetch writes and renames (never loaded)
# Models that have an engine artifact (the statuses after a successful training).
_TRAINED = (ModelStatus.TRAINED, ModelStatus.STARTING_HOSTING, ModelStatus.HOSTED, ModelStatus.HOSTING_FAILED,
            ModelStatus.STOPPING_HOSTING)


class ArtifactError(Exception):
    """The stored artifact is unusable (its manifest is malformed or a file does not match it)."""


def bucket(backend: Backend) -> str:
    """The system bucket that holds this account's model artifacts."""
    return f"lookout-emulator-artifacts-{backend.settings.account_id}"


def _prefix(project: str, version: int) -> str:
    return f"models/{project}/{version}/"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _local_files(directory: Path) -> dict[str, Path]:
    """Every file under `directory`, by its path relative to it (POSIX form, as in the manifest)."""
    if not directory.is_dir():
        return {}
    return {path.relative_to(directory).as_posix(): path for path in directory.rglob("*") if path.is_file()}


@per_backend
def _fetch_lock(backend: Backend) -> threading.Lock:
    """One fetch at a time per emulator: two loads of a model (hosting and packaging) never swap the
    same cache folder at once."""
    return threading.Lock()


def publish(backend: Backend, project: str, version: int) -> None:
    """Upload the model's local engine artifact; the manifest last. Raises ObjectNotFound when the
    store refuses or cannot be reached."""
    files = _local_files(engine_dir(backend, project, version))
    name, prefix = bucket(backend), _prefix(project, version)
    backend.objects.create_bucket(name)
    digests: dict[str, str] = {}
    for relative, path in sorted(files.items()):
        data = path.read_bytes()
        digests[relative] = _sha256(data)
        backend.objects.put(name, prefix + _ENGINE + relative, data)
    for key in backend.objects.list_keys(name, prefix + _ENGINE):  # what an earlier run had and this one lacks
        if key[len(prefix + _ENGINE):] not in digests:
            backend.objects.delete(name, key)
    backend.objects.put(name, prefix + _MANIFEST, json.dumps({"files": digests}, sort_keys=True).encode(),
                        "application/json")


def _stored_manifest(backend: Backend, project: str, version: int) -> dict[str, str] | None:
    """The stored artifact's files and their SHA-256; None when the store has no artifact of the
    model (no manifest, or no system bucket yet)."""
    where = f"s3://{bucket(backend)}/{_prefix(project, version)}{_MANIFEST}"
    try:
        data = backend.objects.get(bucket(backend), _prefix(project, version) + _MANIFEST)
    except ObjectMissing:
        return None
    try:
        files = json.loads(data)["files"]
    except (ValueError, KeyError, TypeError):
        raise ArtifactError(f"the artifact manifest {where} is not valid JSON naming the artifact's files") from None
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ArtifactError(f"the artifact manifest {where} does not map file names to SHA-256 digests")
    for relative in files:
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
            raise ArtifactError(f"the artifact manifest {where} names a file outside the artifact: {relative!r}")
    return files


def _cache_matches(directory: Path, files: dict[str, str]) -> bool:
    local = _local_files(directory)
    return local.keys() == files.keys() and all(_sha256(local[name].read_bytes()) == digest
                                                for name, digest in files.items())


def local_engine(backend: Backend, project: str, version: int) -> Path:
    """The model's engine folder in the local cache, fetched from the store when missing or stale.
    A local artifact the store lacks (a data dir of an earlier release) is published first.
    Raises ArtifactError when the store cannot be used or its artifact is unusable (OSError: the
    local disk)."""
    directory = engine_dir(backend, project, version)
    try:
        with _fetch_lock(backend):
            files = _stored_manifest(backend, project, version)
            if files is None:
                if _local_files(directory):
                    log.info("publishing the local artifact of %s v%s to the object store", project, version)
                    publish(backend, project, version)
                return directory  # (without one, loading fails and says which file it missed)
            if not _cache_matches(directory, files):
                _fetch(backend, project, version, files, directory)
    except ObjectNotFound as exc:
        raise ArtifactError(f"the object store could not be used for the model's artifact: {exc}") from None
    return directory


def _fetch(backend: Backend, project: str, version: int, files: dict[str, str], directory: Path) -> None:
    """Download the artifact into a temporary folder beside `directory`, check it, then swap it in."""
    name, prefix = bucket(backend), _prefix(project, version) + _ENGINE
    directory.parent.mkdir(parents=True, exist_ok=True)
    for leftover in directory.parent.glob(f"{_SCRATCH}*"):  # of a fetch a crash cut off
        shutil.rmtree(leftover, ignore_errors=True)
    temporary = directory.parent / f"{_SCRATCH}{uuid.uuid4().hex}"
    try:
        for relative, digest in files.items():
            data = backend.objects.get(name, prefix + relative)
            if _sha256(data) != digest:
                raise ArtifactError(f"s3://{name}/{prefix}{relative} does not match the artifact's manifest")
            target = temporary / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if directory.exists():
            stale = directory.parent / f"{_SCRATCH}{uuid.uuid4().hex}"
            directory.rename(stale)
            temporary.rename(directory)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            temporary.rename(directory)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    log.info("fetched the artifact of %s v%s from the object store", project, version)


def store_file(backend: Backend, project: str, version: int, name: str, data: bytes) -> None:
    """Keep one of the model's own files (its training plan) beside its artifact, so that any node
    can read it; raises ObjectNotFound when the store refuses or cannot be reached."""
    backend.objects.create_bucket(bucket(backend))
    backend.objects.put(bucket(backend), _prefix(project, version) + name, data, "application/json")


def stored_file(backend: Backend, project: str, version: int, name: str) -> bytes | None:
    """A file `store_file` kept; None when the store has none (or cannot be read now)."""
    try:
        return backend.objects.get(bucket(backend), _prefix(project, version) + name)
    except ObjectNotFound:
        return None


def read_engine_file(backend: Backend, project: str, version: int, relative: str) -> bytes | None:
    """One file of the artifact, from the cache or else straight from the store (the console reads
    the model's JSON without fetching its tensors); None when neither has it."""
    try:
        return (engine_dir(backend, project, version) / relative).read_bytes()
    except OSError:
        pass
    try:
        return backend.objects.get(bucket(backend), _prefix(project, version) + _ENGINE + relative)
    except ObjectNotFound:
        return None


def remove(backend: Backend, project: str, version: int) -> None:
    """Delete the model's stored artifact (DeleteModel); the manifest first, so that what may be
    left by a failure is never taken for a whole artifact."""
    name, prefix = bucket(backend), _prefix(project, version)
    try:
        backend.objects.delete(name, prefix + _MANIFEST)
        for key in backend.objects.list_keys(name, prefix):
            backend.objects.delete(name, key)
    except ObjectMissing:  # no system bucket: nothing was ever stored
        pass


def publish_local_artifacts(backend: Backend) -> None:
    """Start-up recovery: trained models whose artifact is only on this node's disk (a data dir of
    an earlier release) are published, so that every node can load them."""
    for row in backend.store.models.all_in(_TRAINED):
        try:
            if _stored_manifest(backend, row.project, row.version) is None and \
                    _local_files(engine_dir(backend, row.project, row.version)):
                publish(backend, row.project, row.version)
        except (ObjectNotFound, ArtifactError, OSError) as exc:
            log.warning("the artifact of %s v%s could not be published: %s", row.project, row.version, exc)
