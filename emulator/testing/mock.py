"""``mock_lookoutvision``: a real emulator behind unchanged boto3 code, in the style of moto's ``mock_aws``.

    from emulator.testing.mock import mock_lookoutvision

    @mock_lookoutvision
    def test_my_inspection_app():
        lookout = boto3.client("lookoutvision")   # no endpoint_url: the environment points here
        s3 = boto3.client("s3")                   # same server, embedded S3
        ...

Unlike moto, nothing is patched inside botocore: a real server (``emulator.testing.LocalEmulator``:
free port, temporary data dir, embedded S3) answers real HTTP requests, and the standard AWS
environment variables point at it for the duration. That is what a user does with a long-running
emulator, so code that passes under the mock behaves the same against ``lookout-emulator serve``.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import boto3

from emulator.testing.local import TEST_CREDENTIALS, LocalEmulator

F = TypeVar("F", bound=Callable[..., Any])

# Would send requests elsewhere or sign them as a real identity: unset while the mock is active.
_MASKED_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                     "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")


@contextmanager
def aws_environment(emulator: LocalEmulator) -> Iterator[None]:
    """Point boto3, the AWS CLI and the JavaScript SDK at `emulator`; restore everything after.

    boto3's default session is reset too: one created earlier has already resolved credentials and
    region, and ``boto3.client(...)`` would keep using them.
    """
    region = emulator.settings.region
    overrides = {
        "AWS_ENDPOINT_URL": emulator.endpoint_url,
        # Per-service variables beat AWS_ENDPOINT_URL in every SDK: set them rather than trust them.
        "AWS_ENDPOINT_URL_LOOKOUTVISION": emulator.endpoint_url,
        "AWS_ENDPOINT_URL_S3": emulator.endpoint_url,
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }
    saved = {name: os.environ.get(name) for name in (*overrides, *_MASKED_VARIABLES)}
    saved_session = boto3.DEFAULT_SESSION
    for name in _MASKED_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(overrides)
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        boto3.DEFAULT_SESSION = saved_session


class LookoutVisionMock:
    """A fresh emulator plus the environment pointing at it; a context manager and a decorator.

    As a context manager it yields the running ``LocalEmulator`` (``endpoint_url``, ``client()``,
    ``data_dir``, ``backend``). As a decorator each call of the function gets its own emulator.
    Keyword arguments go to ``LocalEmulator`` (``data_dir``, ``region`` and any ``Settings`` field).
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._emulator: LocalEmulator | None = None
        self._environment: Any = None

    def __enter__(self) -> LocalEmulator:
        if self._emulator is not None:
            raise RuntimeError("this mock_lookoutvision() is already active; create another one to nest")
        emulator = LocalEmulator(**self._options).__enter__()
        try:
            self._environment = aws_environment(emulator)
            self._environment.__enter__()
        except BaseException:
            emulator.__exit__(None, None, None)
            raise
        self._emulator = emulator
        return emulator

    def __exit__(self, *exc: object) -> None:
        emulator, self._emulator = self._emulator, None
        try:
            self._environment.__exit__(None, None, None)
        finally:
            if emulator is not None:
                emulator.__exit__(*exc)

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with LookoutVisionMock(**self._options):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def mock_lookoutvision(func: Callable[..., Any] | None = None, **options: Any) -> Any:
    """Run a fresh emulator for a block or a function.

    Use it as ``with mock_lookoutvision() as emu:``, as ``@mock_lookoutvision`` or with options, as
    ``@mock_lookoutvision(region="eu-west-1")``.
    """
    if func is not None:
        return LookoutVisionMock(**options)(func)
    return LookoutVisionMock(**options)
