"""What the access tests share: the keys of the credentials file and small client helpers."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from emulator.config import DEFAULT_REGION
from emulator.testing import LocalEmulator
from tests.api.core_support import ServerProcess

FULL = ("AKIDLOOKOUTFULL", "full-secret/with+symbols")
READ_ONLY = ("AKIDLOOKOUTREAD", "read-only-secret")
CREDENTIALS = f"""\
[default]
aws_access_key_id = {FULL[0]}
aws_secret_access_key = {FULL[1]}

[line-pc]
aws_access_key_id = {READ_ONLY[0]}
aws_secret_access_key = {READ_ONLY[1]}
lookout_permissions = read-only
"""


def make_client(server: LocalEmulator | ServerProcess, service: str, key: tuple[str, str], **config: Any) -> Any:
    """A boto3 client signing with `key`; one attempt, so a refusal is seen as it is sent."""
    region = server.settings.region if isinstance(server, LocalEmulator) else DEFAULT_REGION
    return boto3.client(service, endpoint_url=server.endpoint_url, region_name=region,
                        aws_access_key_id=key[0], aws_secret_access_key=key[1],
                        config=Config(retries={"max_attempts": 1}, **config))


def refused(call: Callable[[], Any]) -> tuple[int, str]:
    """The HTTP status and error code of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False
