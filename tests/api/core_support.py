"""Helpers of the service-core tests (projects, tags, S3, protocol)."""
from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError


def stored_model(emulator: Any, project: str, version: int = 1) -> str:
    """Arrange a model version whose training failed, and return its ARN.

    Training a real model costs minutes of CPU on a busy machine; the project and tag rules only
    need a model to exist, so the row CreateModel leaves behind after a failed training is written
    straight into the store.
    """
    arn = emulator.backend.arn(f"model/{project}/{version}")
    with emulator.backend.store.transaction() as db:
        db.execute("INSERT INTO models(project, version, arn, status, status_message, output_bucket, created_at)"
                   " VALUES (?,?,?,?,?,?,?)", (project, version, arn, "TRAINING_FAILED",
                                               "arranged by a test", "unused-bucket", emulator.backend.now()))
    return arn


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    """The parsed error response of a botocore ClientError: Error.Code/Message, modeled members
    (ResourceId, ResourceType, ...) and ResponseMetadata."""
    return excinfo.value.response


def raw_request(endpoint_url: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send an unsigned HTTP request (paths under /2020-11-20/ reach the API) and return
    (status, lower-cased headers, body), errors included: for what no SDK would send."""
    request = urllib.request.Request(endpoint_url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()
