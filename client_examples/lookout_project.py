"""What every Lookout for Vision boto3 program needs, shared by quickstart.py and segmentation.py.

Client: boto3 (AWS SDK for Python) >= 1.34 with ``pip install botocore-a-la-carte-lookoutvision``
(boto3 <= 1.40.60 still ships the service model itself).

- connecting: the common flags, credentials when none are configured;
- ``Project``: the project's S3 location, uploads, datasets from manifests, training, hosting;
- ``wait_for``: Lookout for Vision has no boto3 waiters, so each long step polls its Describe call.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
# The getting-started cookies dataset, where this repository's machines keep it (../shared from the repo).
COOKIES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cookies"


# --- connecting -----------------------------------------------------------------------------------

def example_parser(description: str, name: str, data_help: str) -> argparse.ArgumentParser:
    """The flags every example takes: where the emulator is, the project and bucket, the data."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5010"),
                        help="the emulator (default: $AWS_ENDPOINT_URL or http://127.0.0.1:5010)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    project = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    parser.add_argument("--project", default=project, help=f"project name, also the S3 prefix (default {project})")
    parser.add_argument("--bucket", default=f"lookout-{name}", help="S3 bucket, created if missing "
                        f"(default lookout-{name})")
    parser.add_argument("--data", type=Path, default=COOKIES, help=f"{data_help} (default {COOKIES})")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between status checks")
    return parser


def session_for(region: str) -> boto3.Session:
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        # An emulator without a credentials file accepts any credentials, but boto3 needs some to sign
        # a request (one started with --credentials-file wants one of its keys, configured as usual).
        session = boto3.Session(region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")  # noqa: S106 - not a secret
    return session


def run_main(run: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
    """Run `run`, turning AWS errors into one readable line and exit status 1."""
    try:
        run(args)
    except EndpointConnectionError:
        raise SystemExit(f"error: nothing answers at {args.endpoint_url}; start the emulator with "
                         "`lookout-emulator serve` or pass --endpoint-url") from None
    except (ClientError, BotoCoreError) as exc:
        raise SystemExit(f"error: {exc}") from None


# --- progress output ------------------------------------------------------------------------------

def progress(what: str, done: int, total: int) -> None:
    """Counted progress: redrawn in place on a terminal, a line per tenth otherwise (logs, CI)."""
    if sys.stdout.isatty():
        print(f"\r  {what}: {done}/{total}", end="\n" if done == total else "", flush=True)
    elif done == total or done % max(1, total // 10) == 0:
        print(f"  {what}: {done}/{total}", flush=True)


def in_progress(status: str) -> bool:
    return status.endswith("_IN_PROGRESS") or status in {"TRAINING", "STARTING_HOSTING", "STOPPING_HOSTING",
                                                         "SYSTEM_UPDATING"}


def wait_for(what: str, poll: Callable[[], tuple[str, str | None]], goal: str, interval: float) -> None:
    """Poll an asynchronous status until it reaches `goal`, printing every change and a heartbeat;
    exit with the service's StatusMessage if it ends anywhere else."""
    start = time.monotonic()
    last, heartbeat = None, start + 10
    while True:
        status, message = poll()
        now = time.monotonic()
        if status != last or now >= heartbeat:
            print(f"  {what}: {status} ({now - start:.0f} s)", flush=True)
            last, heartbeat = status, now + 10
        if status == goal:
            return
        if not in_progress(status):
            raise SystemExit(f"{what} ended in {status}: {message}")
        time.sleep(interval)


# --- the project ----------------------------------------------------------------------------------

class Project:
    """One Lookout for Vision project, with its images and outputs under s3://bucket/<project>/."""

    def __init__(self, args: argparse.Namespace) -> None:
        session = session_for(args.region)
        self.lookout = session.client("lookoutvision", endpoint_url=args.endpoint_url)
        self.s3 = session.client("s3", endpoint_url=args.endpoint_url)
        self.name, self.bucket, self.interval = args.project, args.bucket, args.poll_interval
        self.endpoint_url = args.endpoint_url.rstrip("/")

    @property
    def console_url(self) -> str:
        """The project's page in the emulator's web console (the emulator serves it on the API's port)."""
        return f"{self.endpoint_url}/console/projects/{self.name}"

    def uri(self, key: str) -> str:
        """The S3 URI of `key`, relative to the project's prefix."""
        return f"s3://{self.bucket}/{self.name}/{key}"

    def ensure_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
            return
        except ClientError:
            pass
        region = self.s3.meta.region_name
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        self.s3.create_bucket(Bucket=self.bucket, **location)

    def upload(self, files: list[tuple[Path, str]]) -> None:
        """Upload (local path, key relative to the prefix) pairs, with progress."""
        print(f"Uploading {len(files)} files to {self.uri('')}")
        for done, (path, key) in enumerate(files, 1):
            content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.name}/{key}", Body=path.read_bytes(),
                               ContentType=content_type)
            progress("uploaded", done, len(files))

    def create(self) -> None:
        print(f"Creating project {self.name}")
        self.lookout.create_project(ProjectName=self.name)

    def dataset(self, dataset_type: str) -> dict[str, Any]:
        return self.lookout.describe_dataset(ProjectName=self.name, DatasetType=dataset_type)["DatasetDescription"]

    def dataset_status(self, dataset_type: str) -> tuple[str, str | None]:
        found = self.dataset(dataset_type)
        return found["Status"], found.get("StatusMessage")

    def create_dataset(self, dataset_type: str, manifest_lines: list[str]) -> None:
        """Upload a Ground Truth manifest and create the dataset from it."""
        key = f"{self.name}/manifests/{dataset_type}.manifest"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body="\n".join(manifest_lines).encode() + b"\n")
        print(f"Creating the {dataset_type} dataset from s3://{self.bucket}/{key} ({len(manifest_lines)} images)")
        source = {"GroundTruthManifest": {"S3Object": {"Bucket": self.bucket, "Key": key}}}
        self.lookout.create_dataset(ProjectName=self.name, DatasetType=dataset_type, DatasetSource=source)
        wait_for(f"{dataset_type} dataset", lambda: self.dataset_status(dataset_type), "CREATE_COMPLETE",
                 self.interval)

    def model(self, version: str) -> dict[str, Any]:
        return self.lookout.describe_model(ProjectName=self.name, ModelVersion=version)["ModelDescription"]

    def model_status(self, version: str) -> tuple[str, str | None]:
        model = self.model(version)
        return model["Status"], model.get("StatusMessage")

    def train(self, description: str) -> dict[str, Any]:
        """Train a new model version, print its test metrics and return its description.

        `description` may hold only letters, digits, ".", "-" and "_" (the API's pattern).
        """
        output = {"S3Location": {"Bucket": self.bucket, "Prefix": f"{self.name}/models/"}}
        created = self.lookout.create_model(ProjectName=self.name, Description=description, OutputConfig=output)
        version = created["ModelMetadata"]["ModelVersion"]
        print(f"Training model {version} ({description})")
        wait_for(f"model {version}", lambda: self.model_status(version), "TRAINED", self.interval)
        model = self.model(version)
        performance = model.get("Performance", {})
        print(f"Model {version} on the test dataset: F1 score {performance.get('F1Score', 0):.3f}, "
              f"precision {performance.get('Precision', 0):.3f}, recall {performance.get('Recall', 0):.3f}")
        if "EvaluationResult" in model:
            result = model["EvaluationResult"]
            print(f"  per-image evaluation results: s3://{result['Bucket']}/{result['Key']}")
        return model

    def start(self, version: str) -> None:
        print(f"Starting model {version}")
        self.lookout.start_model(ProjectName=self.name, ModelVersion=version, MinInferenceUnits=1)
        wait_for(f"model {version}", lambda: self.model_status(version), "HOSTED", self.interval)

    def stop(self, version: str) -> None:
        """Stop a hosted model (on AWS a hosted model is billed by the hour: never leave one running)."""
        print(f"Stopping model {version}")
        self.lookout.stop_model(ProjectName=self.name, ModelVersion=version)
        wait_for(f"model {version}", lambda: self.model_status(version), "TRAINED", self.interval)

    def detect(self, version: str, image: Path) -> dict[str, Any]:
        found = self.lookout.detect_anomalies(ProjectName=self.name, ModelVersion=version, Body=image.read_bytes(),
                                              ContentType=CONTENT_TYPES[image.suffix.lower()])
        return found["DetectAnomalyResult"]
