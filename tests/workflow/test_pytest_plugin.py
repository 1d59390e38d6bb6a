"""The fixtures users get from the installed package's pytest plugin (``pytest11`` entry point)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import boto3


def test_fixtures_share_one_server_reachable_from_plain_boto3(lookoutvision_emulator, lookoutvision_client,
                                                             s3_client):
    name = f"plugin-{uuid.uuid4().hex[:8]}"
    boto3.client("lookoutvision").create_project(ProjectName=name)  # code under test: no endpoint_url
    assert lookoutvision_client.describe_project(ProjectName=name)["ProjectDescription"]["ProjectName"] == name
    s3_client.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert os.environ["AWS_ENDPOINT_URL"] == lookoutvision_emulator.endpoint_url


USER_TESTS = '''
    import os
    import boto3

    ENDPOINT_BEFORE = os.environ.get("AWS_ENDPOINT_URL")

    def test_plain_boto3_reaches_the_emulator(lookoutvision_client, s3_client):
        s3_client.create_bucket(Bucket="user-bucket")
        boto3.client("lookoutvision").create_project(ProjectName="user-project")
        assert lookoutvision_client.list_projects()["Projects"][0]["ProjectName"] == "user-project"

    def test_state_is_shared_within_the_session(lookoutvision_client):
        assert [p["ProjectName"] for p in lookoutvision_client.list_projects()["Projects"]] == ["user-project"]

    def test_environment_is_restored_outside_the_fixtures():
        assert os.environ.get("AWS_ENDPOINT_URL") == ENDPOINT_BEFORE
'''


def test_a_users_project_gets_the_fixtures_without_any_conftest(tmp_path):
    """Run pytest as a user would, outside this repository: the entry point alone must provide them."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTEST_"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
