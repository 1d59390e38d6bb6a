"""The Docker image's command, run here: Docker itself cannot run on the build machines.

The command line and environment are read from the Dockerfile (ENTRYPOINT, CMD, ENV, VOLUME,
EXPOSE), so a change there that would break the container breaks this test too.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from emulator.testing import TEST_CREDENTIALS

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def expand(value: str, variables: dict[str, str]) -> str:
    """Docker's substitutions used in the Dockerfile: ``${VAR}`` and ``${VAR:+word}``."""
    def substitute(match: re.Match[str]) -> str:
        current = variables.get(match.group(1), "")
        return (match.group(3) if current else "") if match.group(2) else current

    return re.sub(r"\$\{(\w+)(:\+([^}]*))?\}", substitute, value)


class Image:
    """What `docker run` would do with the image built from the Dockerfile, given build args."""

    def __init__(self, build_args: dict[str, str] | None = None) -> None:
        steps = instructions(DOCKERFILE.read_text())
        self.base = next(args for keyword, args in steps if keyword == "FROM")
        variables: dict[str, str] = {}
        for keyword, args in steps:
            if keyword == "ARG":
                name, _, default = args.partition("=")
                variables[name] = (build_args or {}).get(name, default)
        self.env: dict[str, str] = {}
        for keyword, args in steps:
            if keyword == "ENV":
                for pair in shlex.split(args, posix=False):
                    name, _, value = pair.partition("=")
                    self.env[name] = expand(value, variables)
        last = {keyword: args for keyword, args in steps}
        self.command = json.loads(last["ENTRYPOINT"]) + json.loads(last["CMD"])
        self.volume, self.exposed, self.user = json.loads(last["VOLUME"]), last["EXPOSE"], last.get("USER")

    @contextmanager
    def run(self, **docker_run_env: str) -> Iterator[str]:
        """Start the command as the container would (`-e` variables given), yield its endpoint URL."""
        executable = Path(sys.executable).parent / self.command[0]  # the console script pip installs
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKOUT_")}
        env.update(self.env, **docker_run_env)
        process = subprocess.Popen([str(executable), *self.command[1:]], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            line = process.stdout.readline()  # type: ignore[union-attr]
            bound = re.search(r"listening on http://(\S+):(\d+)", line)
            assert bound, f"the server did not start: {line!r} (its stderr follows the failure)"
            assert bound.group(1) == env["LOOKOUT_HOST"]
            yield f"http://127.0.0.1:{bound.group(2)}"
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # what `docker stop` sends
            self.exit_code = process.wait(timeout=30)
            self.stderr = process.stderr.read()  # type: ignore[union-attr]
            sys.stderr.write(self.stderr)  # pytest shows it with a failure


def clients(endpoint_url: str):
    return (boto3.client(service, endpoint_url=endpoint_url, region_name="us-east-1", **TEST_CREDENTIALS)
            for service in ("lookoutvision", "s3"))


def test_the_image_is_declared_as_documented():
    image = Image()
    assert image.base == "python:3.11-slim"
    assert image.command == ["lookout-emulator", "serve"]
    assert image.env["LOOKOUT_HOST"] == "0.0.0.0"  # inside a container, loopback would be unreachable
    assert image.volume == [image.env["LOOKOUT_DATA_DIR"]]
    assert image.exposed == image.env["LOOKOUT_PORT"]
    assert image.user not in (None, "root", "0")
    assert image.env["LOOKOUT_BACKBONE_WEIGHTS"] == ""  # engine: empty means "no file baked in"


def test_backbone_weights_build_argument_points_the_engine_at_the_baked_file():
    image = Image({"BACKBONE_WEIGHTS": "resnet18.pth"})
    assert image.env["LOOKOUT_BACKBONE_WEIGHTS"] == "/opt/lookout-emulator/weights/resnet18.pth"


def test_the_entrypoint_serves_and_keeps_its_state_in_the_volume(tmp_path):
    image = Image()
    volume = tmp_path / "volume"
    project, bucket = f"docker-{uuid.uuid4().hex[:8]}", f"docker-{uuid.uuid4().hex[:8]}"
    # A free port instead of 5010 (other tests may hold it); docker run -e would do the same.
    with image.run(LOOKOUT_DATA_DIR=str(volume), LOOKOUT_PORT="0") as endpoint:
        lookout, s3 = clients(endpoint)
        lookout.create_project(ProjectName=project)
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="images/a.png", Body=b"png bytes")
    assert image.exit_code == 0, image.stderr
    assert (volume / "metadata.sqlite3").is_file()
    assert "WITHOUT access control" in image.stderr  # the image listens on 0.0.0.0 and was given no keys

    with image.run(LOOKOUT_DATA_DIR=str(volume), LOOKOUT_PORT="0") as endpoint:  # a new container, same volume
        lookout, s3 = clients(endpoint)
        assert lookout.describe_project(ProjectName=project)["ProjectDescription"]["ProjectName"] == project
        assert s3.get_object(Bucket=bucket, Key="images/a.png")["Body"].read() == b"png bytes"
    assert image.exit_code == 0, image.stderr


def test_serve_flags_after_the_image_name_still_work():
    """`docker run IMAGE serve --port 6000` replaces CMD; the entrypoint must accept serve's flags."""
    done = subprocess.run([str(Path(sys.executable).parent / Image().command[0]), "serve", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "--port" in done.stdout and "--data-dir" in done.stdout


def test_a_credentials_file_mounted_as_a_secret_requires_signed_requests(tmp_path):
    """The README's way: the file mounted read-only, LOOKOUT_CREDENTIALS_FILE naming it."""
    secret = tmp_path / "run-secrets" / "lookout-credentials"
    secret.parent.mkdir()
    secret.write_text("[operator]\naws_access_key_id = AKIADOCKER\naws_secret_access_key = docker-secret\n")
    secret.chmod(0o600)
    image = Image()
    with image.run(LOOKOUT_DATA_DIR=str(tmp_path / "volume"), LOOKOUT_PORT="0", LOOKOUT_HOST="127.0.0.1",
                   LOOKOUT_CREDENTIALS_FILE=str(secret)) as endpoint:
        signed = boto3.client("lookoutvision", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="AKIADOCKER", aws_secret_access_key="docker-secret")
        signed.create_project(ProjectName="from-docker")
        lookout, _ = clients(endpoint)  # the test suite's usual key is not in the file
        with pytest.raises(ClientError) as refused:
            lookout.list_projects()
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert image.exit_code == 0, image.stderr
    assert "WITHOUT access control" not in image.stderr
