"""The AWS CLI and the AWS SDK for JavaScript against the emulator with a credentials file: signed
with a configured key they work (uploads included), with a wrong secret or a read-only key they
get the refusal codes, and nothing they were refused is written.

Both need software from outside the Python environment (the `aws` command; Node.js with
client_examples/node_modules from `npm install`), so each test says why when it cannot run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import botocore
import pytest
import requests

from emulator.testing import LocalEmulator
from tests.access.access_support import FULL, READ_ONLY, exists

LOOKOUTVISION_MODEL = Path(botocore.__file__).parent / "data" / "lookoutvision"  # botocore-a-la-carte-lookoutvision
NODE_SDK = Path(__file__).resolve().parents[2] / "client_examples" / "node_modules" / "@aws-sdk"
SCRIPT = Path(__file__).with_name("signed_clients.mjs")


def environment(server: LocalEmulator, key: tuple[str, str], home: Path, **extra: str) -> dict[str, str]:
    """Only these credentials: no profile or config file of the machine's user."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "HOME": str(home), "AWS_ENDPOINT_URL": server.endpoint_url,
            "AWS_DEFAULT_REGION": server.settings.region, "AWS_ACCESS_KEY_ID": key[0],
            "AWS_SECRET_ACCESS_KEY": key[1], "AWS_MAX_ATTEMPTS": "1", **extra}


@pytest.fixture
def aws(secured: LocalEmulator, tmp_path: Path) -> Any:
    """Run `aws ...` with a key; returns the finished process."""
    if shutil.which("aws") is None:
        pytest.skip("the AWS CLI (`aws`) is not installed")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "lookoutvision").symlink_to(LOOKOUTVISION_MODEL, target_is_directory=True)

    def run(key: tuple[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        env = environment(secured, key, tmp_path, AWS_DATA_PATH=str(tmp_path / "models"))
        return subprocess.run(["aws", *args], check=False, capture_output=True, text=True, timeout=120, env=env,
                              stdin=subprocess.DEVNULL)

    return run


def test_the_aws_cli_works_with_a_configured_key_and_is_refused_otherwise(aws: Any, s3: Any, lookout: Any,
                                                                          tmp_path: Path) -> None:
    project, bucket = f"cli-{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    created = aws(FULL, "lookoutvision", "create-project", "--project-name", project)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["ProjectMetadata"]["ProjectName"] == project
    assert aws(FULL, "s3", "mb", f"s3://{bucket}").returncode == 0
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(9 * 1024 * 1024))  # over the CLI's 8 MiB multipart threshold
    copied = aws(FULL, "s3", "cp", str(upload), f"s3://{bucket}/in/upload.bin")
    assert copied.returncode == 0, copied.stderr
    assert s3.get_object(Bucket=bucket, Key="in/upload.bin")["Body"].read() == upload.read_bytes()
    listed = aws(FULL, "s3", "ls", f"s3://{bucket}/in/")
    assert listed.returncode == 0 and "upload.bin" in listed.stdout
    presigned = aws(FULL, "s3", "presign", f"s3://{bucket}/in/upload.bin", "--expires-in", "60")
    fetched = requests.get(presigned.stdout.strip(), timeout=60)
    assert fetched.content == upload.read_bytes(), (presigned.stdout, fetched.text)

    wrong = (FULL[0], "not-the-secret")
    listing = aws(wrong, "lookoutvision", "list-projects")
    assert listing.returncode != 0 and "InvalidSignatureException" in listing.stderr
    refused_copy = aws(wrong, "s3", "cp", str(upload), f"s3://{bucket}/in/refused.bin")
    assert refused_copy.returncode != 0 and "SignatureDoesNotMatch" in refused_copy.stderr
    unknown = aws(("AKIDNOBODYKNOWS", "x"), "lookoutvision", "list-projects")
    assert unknown.returncode != 0 and "UnrecognizedClientException" in unknown.stderr
    read_only = aws(READ_ONLY, "lookoutvision", "create-project", "--project-name", project + "-ro")
    assert read_only.returncode != 0 and "AccessDeniedException" in read_only.stderr
    assert aws(READ_ONLY, "lookoutvision", "describe-project", "--project-name", project).returncode == 0
    read_only_copy = aws(READ_ONLY, "s3", "cp", str(upload), f"s3://{bucket}/in/read-only.bin")
    assert read_only_copy.returncode != 0 and "AccessDenied" in read_only_copy.stderr
    assert not exists(s3, bucket, "in/refused.bin") and not exists(s3, bucket, "in/read-only.bin")
    assert project + "-ro" not in [p["ProjectName"] for p in lookout.list_projects(MaxResults=100)["Projects"]]


def _run_js(server: LocalEmulator, key: tuple[str, str], home: Path, **settings: str) -> dict[str, dict[str, Any]]:
    env = environment(server, key, home, ENDPOINT=server.endpoint_url, REGION=server.settings.region,
                      KEY_ID=key[0], SECRET=key[1], **settings)
    done = subprocess.run(["node", str(SCRIPT)], check=False, capture_output=True, text=True, timeout=120,
                          env=env,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return {line["step"]: line for line in map(json.loads, done.stdout.splitlines())}


def test_the_javascript_sdk_works_with_a_configured_key_and_is_refused_otherwise(
        secured: LocalEmulator, s3: Any, lookout: Any, tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    if not ((NODE_SDK / "client-lookoutvision").is_dir() and (NODE_SDK / "client-s3").is_dir()):
        pytest.skip("run `npm install` in client_examples/ for the AWS SDK for JavaScript")
    bucket, project = f"js-{uuid.uuid4().hex[:8]}", f"js-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    streamed = tmp_path / "streamed.bin"
    streamed.write_bytes(os.urandom(300 * 1024))
    settings = {"PROJECT": project, "BUCKET": bucket, "FILE": str(streamed)}

    steps = _run_js(secured, FULL, tmp_path, **settings)
    assert all(step["ok"] for step in steps.values()), steps
    assert steps["DescribeProject"]["result"] == project and steps["GetObject"]["result"] == "from JavaScript"
    assert steps["ListObjectsV2"]["result"] == ["js/small.txt", "js/streamed.bin"]
    assert s3.get_object(Bucket=bucket, Key="js/streamed.bin")["Body"].read() == streamed.read_bytes()

    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "js/small.txt"}, {"Key": "js/streamed.bin"}]})
    wrong = _run_js(secured, (FULL[0], "not-the-secret"), tmp_path, **{**settings, "PROJECT": project + "-x"})
    assert {name: (step["status"], step["code"]) for name, step in wrong.items()} == {
        "CreateProject": (403, "InvalidSignatureException"), "DescribeProject": (403, "InvalidSignatureException"),
        "PutObject": (403, "SignatureDoesNotMatch"), "PutObjectStream": (403, "SignatureDoesNotMatch"),
        "GetObject": (403, "SignatureDoesNotMatch"), "ListObjectsV2": (403, "SignatureDoesNotMatch")}
    read_only = _run_js(secured, READ_ONLY, tmp_path, **{**settings, "PROJECT": project + "-ro"})
    assert (read_only["CreateProject"]["status"], read_only["CreateProject"]["code"]) == (403, "AccessDeniedException")
    assert (read_only["PutObject"]["status"], read_only["PutObject"]["code"]) == (403, "AccessDenied")
    assert not exists(s3, bucket, "js/small.txt") and not exists(s3, bucket, "js/streamed.bin")
    names = [p["ProjectName"] for p in lookout.list_projects(MaxResults=100)["Projects"]]
    assert project in names and project + "-x" not in names and project + "-ro" not in names
