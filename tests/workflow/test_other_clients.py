"""client_examples/aws_cli.sh (AWS CLI v1) and detect.mjs (AWS SDK for JavaScript v3), run for real.

Both need software from outside the Python environment (the `aws` command; Node.js with
client_examples/node_modules from `npm install`), so each test says why when it cannot run. The
JavaScript test detects with the model the CLI script trained, so that one training serves both.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import botocore
import pytest

from emulator.testing import TEST_CREDENTIALS, LocalEmulator
from tests.workflow.examples import EXAMPLES, run_example
from tests.workflow.synthetic import write_cookies_layout

LOOKOUTVISION_MODEL = Path(botocore.__file__).parent / "data" / "lookoutvision"  # botocore-a-la-carte-lookoutvision


def client_environment(server: LocalEmulator, **extra: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": server.endpoint_url, "AWS_DEFAULT_REGION": server.settings.region,
            "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"], **extra}


@pytest.fixture(scope="module")
def cli_run(lookoutvision_server: LocalEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """aws_cli.sh run once on a tiny cookies-layout dataset: its project, data and output."""
    if shutil.which("aws") is None:
        pytest.skip("the AWS CLI (`aws`) is not installed")
    root = tmp_path_factory.mktemp("cli")
    # The CLI reads extra service models from AWS_DATA_PATH: give it only this environment's lookoutvision model.
    (root / "models").mkdir()
    (root / "models" / "lookoutvision").symlink_to(LOOKOUTVISION_MODEL, target_is_directory=True)
    # The minimum single-dataset classification project: 20 normal and 10 anomaly images.
    data = write_cookies_layout(root / "data", normal=20, anomaly=10, test=4)
    project = f"cli-{uuid.uuid4().hex[:8]}"
    env = client_environment(lookoutvision_server, AWS_DATA_PATH=str(root / "models"), POLL_SECONDS="0.3")
    done = run_example("bash", str(EXAMPLES / "aws_cli.sh"), str(data), project, project, **env)
    yield {"project": project, "data": data, "out": done.stdout, "server": lookoutvision_server}


@pytest.mark.slow
def test_aws_cli_script_trains_hosts_detects_and_stops(cli_run):
    out, server = cli_run["out"], cli_run["server"]
    model = server.client().describe_model(ProjectName=cli_run["project"], ModelVersion="1")["ModelDescription"]
    assert model["Status"] == "TRAINED"
    assert "train dataset: CREATE_COMPLETE" in out and "model 1: TRAINED" in out and "model 1: HOSTED" in out
    assert re.search(r"\|\s+10\s+\|\s+30\s+\|\s+20\s+\|\s+30\s+\|", out)  # ImageStats table
    assert re.search(rf"\|\s+{model['Performance']['F1Score']}\s+\|", out)  # Performance table
    detections = re.findall(r"^\s+(test-\w+-\d\.jpg)\s+(True|False)\s+(\d\.\d+)$", out, re.M)
    images = sorted(p.name for p in (cli_run["data"] / "test-images").iterdir())
    assert sorted(name for name, _, _ in detections) == images
    assert out.rstrip().endswith(f"Done: project {cli_run['project']}, model 1")


def run_copy_of_aws_cli_script(tmp_path: Path, venv_model: bool) -> subprocess.CompletedProcess[str]:
    """aws_cli.sh copied into a checkout of its own (with or without a .venv holding the lookoutvision
    model), with no ~/.aws/models, no AWS_DATA_PATH and nothing listening: it stops at its check."""
    checkout = tmp_path / ("with-venv" if venv_model else "without-venv")
    (checkout / "client_examples").mkdir(parents=True)
    shutil.copy(EXAMPLES / "aws_cli.sh", checkout / "client_examples" / "aws_cli.sh")
    if venv_model:
        data = checkout / ".venv" / "lib" / "python3.11" / "site-packages" / "botocore" / "data"
        data.mkdir(parents=True)
        (data / "lookoutvision").symlink_to(LOOKOUTVISION_MODEL, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_ENDPOINT_URL="http://127.0.0.1:9")
    return subprocess.run(["bash", str(checkout / "client_examples" / "aws_cli.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_aws_cli_script_explains_a_cli_without_the_lookoutvision_model(tmp_path):
    if shutil.which("aws") is None:
        pytest.skip("the AWS CLI (`aws`) is not installed")
    done = run_copy_of_aws_cli_script(tmp_path, venv_model=False)
    if "Invalid choice" not in done.stderr and "no lookoutvision model" not in done.stderr:
        pytest.skip("this AWS CLI ships the lookoutvision model itself")
    assert done.returncode == 1
    assert "no lookoutvision model: see the header of" in done.stderr

    # With the model in the checkout's .venv, the script uses it: the CLI gets as far as connecting.
    found = run_copy_of_aws_cli_script(tmp_path, venv_model=True)
    assert found.returncode == 1 and "no lookoutvision model" not in found.stderr, found.stderr
    assert "Using the lookoutvision service model in" in found.stdout
    assert "Could not connect to the endpoint URL" in found.stderr


def require_javascript_sdk() -> None:
    """Skip, saying why, where detect.mjs cannot run."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    if not (EXAMPLES / "node_modules" / "@aws-sdk" / "client-lookoutvision").is_dir():
        pytest.skip("run `npm install` in client_examples/ to run the JavaScript example")


@pytest.mark.slow
def test_detect_mjs_hosts_the_model_detects_and_stops_it(cli_run):
    require_javascript_sdk()
    images = sorted((cli_run["data"] / "test-images").iterdir())
    # Without --model-version it takes the project's latest trained model: train a second one.
    lookout = cli_run["server"].client()
    version = lookout.create_model(ProjectName=cli_run["project"], OutputConfig={"S3Location": {
        "Bucket": cli_run["project"], "Prefix": f"{cli_run['project']}/models/"}})["ModelMetadata"]["ModelVersion"]
    assert version == "2"
    deadline = time.monotonic() + 300
    while (status := lookout.describe_model(ProjectName=cli_run["project"], ModelVersion="2")
           ["ModelDescription"]["Status"]) == "TRAINING":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert status == "TRAINED"
    done = run_example("node", str(EXAMPLES / "detect.mjs"), "--project", cli_run["project"], "--poll-seconds", "0.3",
                       *map(str, images), **client_environment(cli_run["server"]))
    assert "model 2: HOSTED" in done.stdout and "model 2: TRAINED" in done.stdout
    lines = re.findall(r"^\s+(test-\w+-\d\.jpg)\s+(normal|anomaly)\s+confidence (\d\.\d\d)$", done.stdout, re.M)
    assert sorted(name for name, _, _ in lines) == [p.name for p in images]
    model = lookout.describe_model(ProjectName=cli_run["project"], ModelVersion="2")
    assert model["ModelDescription"]["Status"] == "TRAINED"  # it stopped the model it started


@pytest.mark.parametrize("args, endpoint, status, message", [
    (["--project", "nope", "x.jpg"], "server", 1, "detect.mjs: ResourceNotFoundException: The project nope does not"),
    (["--project", "nope", "--model-version", "1", "x.jpg"], "server", 1, "ResourceNotFoundException"),
    (["--project", "nope", "x.jpg"], "http://127.0.0.1:9", 1, "ECONNREFUSED 127.0.0.1:9 (is lookout-emulator serve"),
    (["--bogus", "x.jpg"], "server", 2, "detect.mjs: Unknown option '--bogus'"),
    (["--project", "nope"], "server", 2, "usage: detect.mjs --project NAME"),
])
def test_detect_mjs_reports_a_failure_in_one_line(lookoutvision_server: LocalEmulator, args: list[str], endpoint: str,
                                                  status: int, message: str):
    """A mistyped project, a server that is not running or a bad option: one line and an exit status,
    no Node.js stack trace."""
    require_javascript_sdk()
    env = {**os.environ, **client_environment(lookoutvision_server)}
    if endpoint != "server":
        env["AWS_ENDPOINT_URL"] = endpoint
    done = subprocess.run(["node", str(EXAMPLES / "detect.mjs"), *args], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == status, (done.returncode, done.stderr)
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_detect_mjs_is_valid_javascript():
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    subprocess.run(["node", "--check", str(EXAMPLES / "detect.mjs")], check=True, timeout=60)
