"""The model package format (docs/model-package.md): StartModelPackagingJob writes it, the edge agent
loads it. This module is the format's one definition: names, version, how a package is written and
how it is read and checked. It imports neither the web stack nor torch.

Under a packaging job's S3OutputLocation a component is

    <ComponentName>/<ComponentVersion>/model.tar.gz        engine/ (the engine artifact) + lookout-model.json
    <ComponentName>/<ComponentVersion>/lookout-model.json  the manifest, with the archive's size and SHA-256

and the agent's --components-dir holds such <ComponentName>/ folders copied as they are.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

FORMAT = "lookout-emulator-model-package"
# Raise on any change a reader of the previous version would misread; readers refuse newer versions.
FORMAT_VERSION = 1
ARCHIVE_NAME = "model.tar.gz"
MANIFEST_NAME = "lookout-model.json"
ENGINE_DIR = "engine"
MODEL_TYPES = ("classification", "segmentation")
# ComponentName as the service model constrains it (min 1, max 128, pattern [a-zA-Z0-9-_.]+): the names
# a packaging job can give a component, so the only names a component folder or an RPC may use.
COMPONENT_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
# ComponentVersion as the service model constrains it: major.minor.patch, numbers of up to 6 digits.
_VERSION = re.compile(r"(\d{1,6})\.(\d{1,6})\.(\d{1,6})")
_MAX_MANIFEST = 1024 * 1024
# An engine artifact is tens of megabytes; anything near this is not one (or is a decompression bomb).
MAX_UNPACKED = 4 * 1024**3


class PackageError(Exception):
    """A package that cannot be loaded; the message says what is wrong and what to do about it."""


# ------------------------------------------------------------------------------------------ writing
def new_manifest(*, component_name: str, component_version: str, model_arn: str, model_type: str,
                 image_size: tuple[int, int], label_colors: dict[str, str], **extra: Any) -> dict[str, Any]:
    """The manifest of a package (without "Archive", which ``seal`` adds once the archive exists).
    ``extra`` adds informational fields (the project, the target, ...) that readers do not need."""
    return {
        "Format": FORMAT,
        "FormatVersion": FORMAT_VERSION,
        "ComponentName": component_name,
        "ComponentVersion": component_version,
        "ModelArn": model_arn,
        "ModelType": model_type,
        "ImageWidth": image_size[0],
        "ImageHeight": image_size[1],
        "LabelColors": label_colors,
        "EngineDirectory": ENGINE_DIR,
        **extra,
        "CreatedAt": dt.datetime.now(dt.UTC).isoformat(),
    }


def build_archive(engine_dir: Path, manifest: dict[str, Any]) -> bytes:
    """``model.tar.gz``: the engine artifact as ``engine/`` with the manifest beside it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(engine_dir, arcname=ENGINE_DIR)
        data = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size, info.mtime = len(data), int(dt.datetime.now().timestamp())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def seal(manifest: dict[str, Any], archive: bytes, key: str) -> dict[str, Any]:
    """The manifest to store beside the archive: with the archive's key, size and SHA-256."""
    return {**manifest, "Archive": {"Key": key, "Size": len(archive), "Sha256": hashlib.sha256(archive).hexdigest()}}


# ------------------------------------------------------------------------------------------ reading
def parse_version(name: str) -> tuple[int, int, int] | None:
    """A component version folder's (major, minor, patch); None for any other name."""
    found = _VERSION.fullmatch(name)
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


@dataclass(frozen=True)
class Package:
    """A component's newest version, its manifest read and checked (the archive is checked on unpack)."""

    component: str
    version: str
    folder: Path
    manifest: dict[str, Any]

    @property
    def model_arn(self) -> str:
        return str(self.manifest["ModelArn"])

    @property
    def model_type(self) -> str:
        return str(self.manifest["ModelType"])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.manifest["ImageWidth"]), int(self.manifest["ImageHeight"])


def read_package(component_dir: Path) -> Package:
    """The package of a component folder: its highest version folder, whose manifest must be valid."""
    versions = sorted(((parse_version(child.name), child) for child in _subfolders(component_dir)
                       if parse_version(child.name) is not None), key=lambda pair: pair[0] or (0, 0, 0))
    if not versions:
        raise PackageError(f"{component_dir} has no version folder (such as 1.0.0/) holding {MANIFEST_NAME}: copy "
                           f"the whole <ComponentName>/ folder that the packaging job wrote under its "
                           f"S3OutputLocation.")
    folder = versions[-1][1]
    return Package(component_dir.name, folder.name, folder, _manifest(folder))


def _subfolders(directory: Path) -> list[Path]:
    try:
        return [child for child in directory.iterdir() if child.is_dir()]
    except OSError as exc:
        raise PackageError(f"Cannot read {directory}: {exc.strerror or exc}.") from None


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_NAME
    try:
        with _open_regular(path) as file:
            data = file.read(_MAX_MANIFEST + 1)
        if len(data) > _MAX_MANIFEST:
            raise PackageError(f"{path} is larger than {_MAX_MANIFEST} bytes; it is not a package manifest.")
    except FileNotFoundError:
        raise PackageError(f"{folder} has no {MANIFEST_NAME}; it is not a model package (the newest version "
                           "folder of a component must hold what the packaging job wrote).") from None
    except OSError as exc:
        raise PackageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        manifest = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PackageError(f"{path} is not valid JSON ({exc}).") from None
    except RecursionError:  # json's parser recurses once per nesting level: a package never nests deeply
        raise PackageError(f"{path} is not a package manifest (its JSON nests too deeply).") from None
    if not isinstance(manifest, dict) or manifest.get("Format") != FORMAT:
        raise PackageError(f"{path} is not a {FORMAT} manifest.")
    version = manifest.get("FormatVersion")
    if not isinstance(version, int) or version < 1:
        raise PackageError(f"{path} has an invalid FormatVersion ({version!r}).")
    if version > FORMAT_VERSION:
        raise PackageError(f"{path} is package format version {version}, written by a newer lookout-emulator; this "
                           f"agent reads format version {FORMAT_VERSION}. Upgrade lookout-emulator on this device.")
    archive = manifest.get("Archive")
    problems = [key for key, ok in (
        ("ModelArn", isinstance(manifest.get("ModelArn"), str)),
        ("ModelType", manifest.get("ModelType") in MODEL_TYPES),
        ("ImageWidth", isinstance(manifest.get("ImageWidth"), int)),
        ("ImageHeight", isinstance(manifest.get("ImageHeight"), int)),
        ("Archive", isinstance(archive, dict) and isinstance(archive.get("Sha256"), str)
         and isinstance(archive.get("Size"), int)),
    ) if not ok]
    if problems:
        raise PackageError(f"{path} lacks valid {', '.join(problems)}.")
    return manifest


def _open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (PackageError if it is anything else).
    Opened without blocking and checked on the open descriptor: a FIFO or a device in a package's
    place would otherwise hang the agent in open() or read() (its RPCs, then its shutdown), and a
    check by name could be raced by a swap."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PackageError(f"{path} is not a regular file; copy the component folder again.")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def unpack_engine(package: Package, destination: Path) -> Path:
    """Check the archive against the manifest and extract its engine artifact under `destination`;
    returns the artifact's folder. Only regular files and folders under ``engine/`` are written."""
    path = package.folder / ARCHIVE_NAME
    expected = package.manifest["Archive"]
    try:
        digest, size = hashlib.sha256(), 0
        with _open_regular(path) as source:
            while chunk := source.read(1024 * 1024):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise PackageError(f"{package.folder} has no {ARCHIVE_NAME}; copy the component folder again.") from None
    except OSError as exc:
        raise PackageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    if size != expected["Size"] or digest.hexdigest() != expected["Sha256"]:
        raise PackageError(f"{path} does not match its manifest ({size} bytes, SHA-256 {digest.hexdigest()[:12]}..., "
                           f"expected {expected['Size']} bytes, {expected['Sha256'][:12]}...): the copy is incomplete "
                           "or damaged; copy the component folder again.")
    total = 0
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not parts or parts[0] != ENGINE_DIR:
                    continue
                if member.name.startswith("/") or ".." in parts:
                    raise PackageError(f"{path} holds an unsafe path ({member.name}).")
                target = destination.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise PackageError(f"{path} holds {member.name}, which is not a regular file.")
                total += member.size
                if total > MAX_UNPACKED:
                    raise PackageError(f"{path} unpacks to more than {MAX_UNPACKED} bytes; it is not a model package.")
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, target.open("wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise PackageError(f"{path} is not a readable gzipped tar ({exc}).") from None
    except OSError as exc:
        raise PackageError(f"Cannot unpack {path} into {destination}: {exc.strerror or exc}.") from None
    engine_dir = destination / ENGINE_DIR
    if not engine_dir.is_dir():
        raise PackageError(f"{path} has no {ENGINE_DIR}/ folder; it is not a model package.")
    return engine_dir
