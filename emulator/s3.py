"""S3 beside the API: the embedded moto S3 and the object access service code uses.

Requests are routed to S3 or to Lookout for Vision by the service in their SigV4 credential scope,
so any bucket name works; unsigned requests fall back to path rules.
"""
from __future__ import annotations

import re
from typing import Any, Protocol

from emulator.config import Settings
from emulator.errors import ValidationException

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_QUERY_SCOPE = re.compile(r"X-Amz-Credential=[^&]*?(?:%2F|/)\d{8}(?:%2F|/)[^&%/]+(?:%2F|/)([^&%/]+)(?:%2F|/)aws4_request")
API_PREFIXES = ("/2020-11-20/", "/console", "/_emulator")


def signed_service(environ: dict[str, Any]) -> str | None:
    """The service named in a request's SigV4 credential scope, if it is signed."""
    found = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if found is None:
        found = _QUERY_SCOPE.search(environ.get("QUERY_STRING", ""))
    return found.group(1) if found else None


def is_s3_request(environ: dict[str, Any]) -> bool:
    service = signed_service(environ)
    if service is not None:
        return service == "s3"
    return not environ.get("PATH_INFO", "/").startswith(API_PREFIXES)


class ObjectStore(Protocol):
    """What service code needs of S3: read manifests and images, write evaluation output."""

    def get(self, bucket: str, key: str) -> bytes: ...
    def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...
    def size(self, bucket: str, key: str) -> int: ...
    def create_bucket(self, bucket: str) -> None: ...
    def list_keys(self, bucket: str, prefix: str) -> list[str]: ...


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key); ValidationException otherwise."""
    found = re.fullmatch(r"s3://([^/]+)/(.+)", uri or "")
    if found is None:
        raise ValidationException(f"{uri!r} is not an S3 URI of the form s3://bucket/key")
    return found.group(1), found.group(2)


def object_store_for(settings: Settings) -> ObjectStore:
    from emulator.s3_stores import EmbeddedObjectStore, ExternalObjectStore

    if settings.s3_endpoint_url:
        return ExternalObjectStore(settings)
    return EmbeddedObjectStore(settings)
