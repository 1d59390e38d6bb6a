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
