"""The two ObjectStore implementations: embedded moto S3 (in-process) and an external S3 endpoint."""
from __future__ import annotations

import boto3
import botocore.exceptions
from botocore.config import Config

from emulator.config import Settings


class ObjectNotFound(Exception):
    """The bucket or key does not exist (service code turns this into a user-facing message)."""


class EmbeddedObjectStore:
    """Direct calls into moto's S3 backend: no HTTP hop, so jobs never wait on our own server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @staticmethod
    def _backend():  # type: ignore[no-untyped-def]
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]

    def _key(self, bucket: str, key: str):  # type: ignore[no-untyped-def]
        from moto.s3.exceptions import MissingBucket, MissingKey

        try:
            found = self._backend().get_object(bucket, key)
        except (MissingBucket, MissingKey):
            found = None
        if found is None:
            raise ObjectNotFound(f"s3://{bucket}/{key} does not exist")
        return found

    def get(self, bucket: str, key: str) -> bytes:
        return self._key(bucket, key).value

    def size(self, bucket: str, key: str) -> int:
        return int(self._key(bucket, key).size)

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from moto.s3.exceptions import MissingBucket

        try:
            self._backend().put_object(bucket, key, data)
        except MissingBucket:
            raise ObjectNotFound(f"bucket {bucket} does not exist") from None

    def create_bucket(self, bucket: str) -> None:
        """Create `bucket` unless it exists (the web console's bucket is made on first use)."""
        from moto.s3.exceptions import BucketAlreadyExists

        try:
            self._backend().create_bucket(bucket, self.settings.region)
        except BucketAlreadyExists:
            pass

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key under `prefix`, sorted."""
        from moto.s3.exceptions import MissingBucket

        try:
            found = self._backend().get_bucket(bucket)
        except MissingBucket:
            raise ObjectNotFound(f"bucket {bucket} does not exist") from None
        keys, _, _, _ = self._backend().list_objects(found, prefix or None, None, None, None)
        return [key.name for key in keys]


class ExternalObjectStore:
    """Any S3-compatible endpoint (MinIO, AWS) given with --s3-endpoint-url."""

    def __init__(self, settings: Settings) -> None:
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.region,
                                   config=Config(retries={"max_attempts": 3}))

    def get(self, bucket: str, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as exc:
            raise ObjectNotFound(f"s3://{bucket}/{key}: {exc.response['Error'].get('Message', exc)}") from None

    def size(self, bucket: str, key: str) -> int:
        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except botocore.exceptions.ClientError as exc:
            raise ObjectNotFound(f"s3://{bucket}/{key}: {exc.response['Error'].get('Message', exc)}") from None

    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
        except botocore.exceptions.ClientError as exc:
            raise ObjectNotFound(f"s3://{bucket}/{key}: {exc.response['Error'].get('Message', exc)}") from None

    def create_bucket(self, bucket: str) -> None:
        region = self.client.meta.region_name
        where = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            self.client.create_bucket(Bucket=bucket, **where)
        except self.client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except botocore.exceptions.ClientError as exc:
            raise ObjectNotFound(f"bucket {bucket}: {exc.response['Error'].get('Message', exc)}") from None

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [item["Key"] for page in pages for item in page.get("Contents", [])]
        except botocore.exceptions.ClientError as exc:
            raise ObjectNotFound(f"s3://{bucket}/{prefix}: {exc.response['Error'].get('Message', exc)}") from None
