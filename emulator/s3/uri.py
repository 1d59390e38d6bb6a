"""S3 URIs (``s3://bucket/key``): the one parser and builder of them that every module uses."""
from __future__ import annotations

import re

from emulator.api.errors import ValidationException

_URI = re.compile(r"s3://(?P<bucket>[^/]+)(?:/(?P<key>.*))?")


def s3_uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: object) -> tuple[str, str] | None:
    """(bucket, key) of an ``s3://bucket/key`` string (the key not empty), or None when it is not one."""
    found = _URI.fullmatch(uri) if isinstance(uri, str) else None
    if found is None or not found["key"]:
        return None
    return found["bucket"], found["key"]


def split_s3_location(uri: str) -> tuple[str, str] | None:
    """(bucket, prefix) of ``s3://bucket``, ``s3://bucket/`` or ``s3://bucket/prefix``, or None."""
    found = _URI.fullmatch(uri)
    return (found["bucket"], found["key"] or "") if found else None


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`split_s3_uri` for input from a user: a ValidationException when `uri` is not an object's URI."""
    found = split_s3_uri(uri)
    if found is None:
        raise ValidationException(f"{uri!r} is not an S3 URI of the form s3://bucket/key")
    return found
