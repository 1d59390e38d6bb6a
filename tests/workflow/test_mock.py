"""`mock_lookoutvision`: plain boto3 code reaches a fresh emulator, and everything is restored after."""
from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest

from emulator.mock import mock_lookoutvision

README = Path(__file__).resolve().parents[2] / "README.md"


def _is_serving(endpoint_url: str) -> bool:
    url = urlsplit(endpoint_url)
    try:
        socket.create_connection((url.hostname, url.port), timeout=2).close()
    except OSError:
        return False
    return True


def test_context_manager_points_plain_clients_at_a_running_emulator(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere.invalid")
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ENDPOINT_URL_LOOKOUTVISION", "http://also-elsewhere.invalid")
    bucket = f"mock-{uuid.uuid4().hex[:8]}"
    with mock_lookoutvision() as emu:
        lookout, s3 = boto3.client("lookoutvision"), boto3.client("s3")
        assert lookout.meta.endpoint_url == emu.endpoint_url == s3.meta.endpoint_url
        assert "AWS_PROFILE" not in os.environ
        assert os.environ["AWS_ENDPOINT_URL_LOOKOUTVISION"] == emu.endpoint_url
        arn = lookout.create_project(ProjectName="mocked")["ProjectMetadata"]["ProjectArn"]
        assert arn == "arn:aws:lookoutvision:us-east-1:123456789012:project/mocked"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")
        assert emu.backend.objects.get(bucket, "a.txt") == b"hello"
        data_dir = emu.data_dir
        assert data_dir.is_dir()
    assert os.environ["AWS_ENDPOINT_URL"] == "http://elsewhere.invalid"
    assert os.environ["AWS_PROFILE"] == "production"
    assert os.environ["AWS_ENDPOINT_URL_LOOKOUTVISION"] == "http://also-elsewhere.invalid"
    assert not _is_serving(emu.endpoint_url)
    assert not data_dir.exists()


def test_a_default_session_made_before_the_mock_does_not_leak_into_it(monkeypatch):
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    boto3.setup_default_session(region_name="ap-south-1")
    before = boto3.DEFAULT_SESSION
    with mock_lookoutvision() as emu:
        client = boto3.client("lookoutvision")
        assert client.meta.region_name == "us-east-1"
        assert client.meta.endpoint_url == emu.endpoint_url
    assert boto3.DEFAULT_SESSION is before


def test_decorator_gives_each_call_a_fresh_emulator():
    seen = []

    @mock_lookoutvision
    def create_and_list(name: str) -> list[str]:
        lookout = boto3.client("lookoutvision")
        seen.append(lookout.meta.endpoint_url)
        lookout.create_project(ProjectName=name)
        return [p["ProjectName"] for p in lookout.list_projects()["Projects"]]

    assert create_and_list("first") == ["first"]
    assert create_and_list("second") == ["second"]
    assert seen[0] != seen[1]
    assert "AWS_ENDPOINT_URL" not in os.environ or os.environ["AWS_ENDPOINT_URL"] not in seen


def test_decorator_with_options_and_pytest_fixtures_still_injected(tmp_path):
    @mock_lookoutvision(region="eu-west-1", data_dir=tmp_path / "kept")
    def create(name: str) -> str:
        return boto3.client("lookoutvision").create_project(ProjectName=name)["ProjectMetadata"]["ProjectArn"]

    assert create("regional").startswith("arn:aws:lookoutvision:eu-west-1:")
    assert any((tmp_path / "kept").iterdir())  # a data dir you pass is yours: it is kept


def test_errors_inside_the_block_still_tear_down():
    with pytest.raises(ZeroDivisionError):
        with mock_lookoutvision() as emu:
            endpoint = emu.endpoint_url
            1 / 0  # noqa: B018
    assert not _is_serving(endpoint)
    assert os.environ.get("AWS_ENDPOINT_URL") != endpoint


def test_nested_mocks_are_independent_and_the_outer_one_is_restored():
    bucket = f"outer-{uuid.uuid4().hex[:8]}"
    with mock_lookoutvision() as outer:
        boto3.client("lookoutvision").create_project(ProjectName="outer")
        boto3.client("s3").create_bucket(Bucket=bucket)
        with mock_lookoutvision() as inner:
            assert inner.endpoint_url != outer.endpoint_url
            assert boto3.client("lookoutvision").list_projects()["Projects"] == []
            assert boto3.client("s3").list_buckets()["Buckets"] == []
            boto3.client("s3").create_bucket(Bucket=bucket)  # the same name: a separate S3
        assert os.environ["AWS_ENDPOINT_URL"] == outer.endpoint_url
        assert boto3.client("lookoutvision").list_projects()["Projects"][0]["ProjectName"] == "outer"
        assert [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]] == [bucket]


def test_an_active_mock_cannot_be_entered_twice():
    mock = mock_lookoutvision()
    with mock:
        with pytest.raises(RuntimeError, match="already active"):
            mock.__enter__()


def test_the_readme_example_runs():
    section = README.read_text().split("## Testing your code against it", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    before = os.environ.get("AWS_ENDPOINT_URL")
    namespace["test_inspection_app"]()
    assert os.environ.get("AWS_ENDPOINT_URL") == before
