"""The two ObjectStore implementations: embedded moto S3 (in-process) and an external S3 endpoint."""
from __future__ import annotations

import os
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from emulator.config import Settings
from emulator.s3.mirror import S3Mirror
from emulator.s3.moto_space import MotoS3Space
from emulator.s3.objects import ObjectMissing, ObjectNotFound, ObjectStore

# Seconds a readiness probe waits for an external store to connect and to answer: load balancers
# and Kubernetes give a probe a few seconds (Kubernetes: 1 s unless its timeoutSeconds says more).
PROBE_TIMEOUT_S = 2.0


def object_store_for(settings: Settings) -> ObjectStore:
    """The external store when the settings name an endpoint, else the embedded one."""
    if settings.s3_endpoint_url:
        return ExternalObjectStore(settings)
    return EmbeddedObjectStore(settings)


class EmbeddedObjectStore:
    """moto's S3, called directly (no HTTP hop, so jobs never wait on our own server), in a moto
    space of its own (see `emulator.s3.moto_space`) and mirrored to ``settings.s3_dir`` so that it
    survives restarts: every server starts with exactly the buckets of its data dir."""

    def __init__(self, settings: Settings) -> None:
        self.region = settings.region
        self.space = MotoS3Space()
        self.mirror = S3Mirror(settings.s3_dir, self.space)

    def open(self) -> None:
        self.mirror.restore()

    def close(self) -> None:
        self.space.discard()

    def ping(self) -> str | None:
        """Moto answers in-process; what can fail is writing the disk mirror every change goes to
        (its folder, or before the first bucket the data directory it will be made in)."""
        folder = self.mirror.root if self.mirror.root.exists() else self.mirror.root.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            return f"the embedded S3's folder {folder} is not a writable folder"
        return None

    def changed(self, bucket: str, key: str | None) -> None:
        """Write a successful S3 change through to the mirror (`key` None: a bucket-level change)."""
        if key is None:
            self.mirror.sync_bucket(bucket)
        else:
            self.mirror.sync_key(bucket, key)

    def _bucket(self, bucket: str, key: str = "") -> Any:
        found = self.space.bucket(bucket)
        if found is None:
            raise ObjectMissing(f"s3://{bucket}/{key}: the bucket {bucket} does not exist")
        return found

    def _key(self, bucket: str, key: str) -> Any:
        found = self.space.current_key(self._bucket(bucket, key), key)
        if found is None:
            raise ObjectMissing(f"s3://{bucket}/{key}: the object does not exist")
        return found

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self._key(bucket, key).value)

    def size(self, bucket: str, key: str) -> int:
        return int(self._key(bucket, key).size)

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        found = self._bucket(bucket, key)
        with self.space.active():
            written = self.space.backend(found.partition).put_object(bucket, key, data)
        written.set_metadata({"Content-Type": content_type})
        self.mirror.sync_key(bucket, key)

    def delete(self, bucket: str, key: str) -> None:
        found = self.space.bucket(bucket)
        if found is None:
            return
        with self.space.active():
            self.space.backend(found.partition).delete_object(bucket, key)
        self.mirror.sync_key(bucket, key)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        found = self._bucket(bucket)
        return sorted(name for name, _ in found.keys.items()
                      if name.startswith(prefix) and self.space.current_key(found, name) is not None)

    def create_bucket(self, bucket: str) -> None:
        if self.space.bucket(bucket) is not None:
            return
        self.space.create_bucket(bucket, self.region)
        self.mirror.sync_bucket(bucket)


class ExternalObjectStore:
    """Any S3-compatible endpoint (MinIO, AWS) given with --s3-endpoint-url; credentials come from
    the usual AWS environment variables or profile."""

    def __init__(self, settings: Settings) -> None:
        self.endpoint_url = settings.s3_endpoint_url
        self.region = settings.region
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.region,
                                   config=Config(retries={"max_attempts": 3}))
        self._probe_client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.region,
                                          config=Config(retries={"max_attempts": 1}, connect_timeout=PROBE_TIMEOUT_S,
                                                        read_timeout=PROBE_TIMEOUT_S))

    def open(self) -> None:
        """Nothing to load: the external store keeps its own state."""

    def ping(self) -> str | None:
        """Any S3 answer, even AccessDenied (the key may not list buckets), proves the store is up;
        no answer within the probe's timeouts, or a server error, means it is not. A client of its
        own, without retries, so that a probe answers within seconds."""
        try:
            self._probe_client.list_buckets()
        except botocore.exceptions.ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if status >= 500:
                return f"{self.endpoint_url} answered HTTP {status}"
        except botocore.exceptions.BotoCoreError as exc:
            return f"{self.endpoint_url} does not answer ({exc})"
        return None

    def close(self) -> None:
        self.client.close()
        self._probe_client.close()

    def _fail(self, bucket: str, key: str, exc: Exception) -> ObjectNotFound:
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response["Error"]
            code = error.get("Code", "")
            if code == "NoSuchBucket":
                return ObjectMissing(f"s3://{bucket}/{key}: the bucket {bucket} does not exist")
            if code in ("404", "NoSuchKey", "NotFound"):
                return ObjectMissing(f"s3://{bucket}/{key}: the object does not exist")
            reason = error.get("Message") or code
        else:
            reason = f"{self.endpoint_url} could not be used: {exc}"
        return ObjectNotFound(f"s3://{bucket}/{key}: {reason}")

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail(bucket, key, exc) from None

    def size(self, bucket: str, key: str) -> int:
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail(bucket, key, exc) from None

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail(bucket, key, exc) from None

    def delete(self, bucket: str, key: str) -> None:
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if exc.response["Error"].get("Code") != "NoSuchBucket":
                raise self._fail(bucket, key, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._fail(bucket, key, exc) from None

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail(bucket, prefix, exc) from None

    def create_bucket(self, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
            return
        except botocore.exceptions.ClientError:
            pass  # absent (or not ours: creating it says so)
        except botocore.exceptions.BotoCoreError as exc:
            raise self._fail(bucket, "", exc) from None
        location = ({} if self.region == "us-east-1"
                    else {"CreateBucketConfiguration": {"LocationConstraint": self.region}})
        try:
            self.client.create_bucket(Bucket=bucket, **location)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._fail(bucket, "", exc) from None
