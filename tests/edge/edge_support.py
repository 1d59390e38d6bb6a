"""Helpers of the edge agent tests: stubs, polling, errors, images and stub generation."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from emulator.edge import edge_agent_pb2 as pb2
from emulator.edge import edge_agent_pb2_grpc as pb2_grpc
from tests.api.models_support import OUTPUT_BUCKET, Trained

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "emulator" / "edge" / "edge-agent.proto"
WHITE = (255, 255, 255)
PREFIX = "edge-packages"
# Component name -> (model kind, component version). "segmenter" has two versions, of two different
# models: the agent must serve 10.0.0, the highest (a string sort would pick 2.0.0).
PACKAGES = {"classifier": [("classification", "1.0.0")],
            "segmenter": [("classification", "2.0.0"), ("segmentation", "10.0.0")]}


def package(model: Trained, component: str, version: str) -> None:
    """StartModelPackagingJob for the model, and wait for it to succeed."""
    lookout, project = model.kit.lookout, model.kit.project
    job = lookout.start_model_packaging_job(
        ProjectName=project, ModelVersion="1",
        Configuration={"Greengrass": {"ComponentName": component, "ComponentVersion": version,
                                      "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
                                      "S3OutputLocation": {"Bucket": OUTPUT_BUCKET, "Prefix": PREFIX}}})["JobName"]
    deadline = time.monotonic() + 120
    while True:
        described = lookout.describe_model_packaging_job(ProjectName=project, JobName=job)["ModelPackagingDescription"]
        if described["Status"] in ("SUCCEEDED", "FAILED"):
            break
        assert time.monotonic() < deadline, "packaging job still running"
        time.sleep(0.05)
    assert described["Status"] == "SUCCEEDED", described["StatusMessage"]


def copy_component(s3: Any, component: str, destination: Path) -> None:
    """What `aws s3 cp --recursive s3://<bucket>/<prefix>/<component>/ <destination>/<component>/` does."""
    source = f"{PREFIX}/{component}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=OUTPUT_BUCKET, Prefix=source):
        for item in page.get("Contents", []):
            target = destination / component / item["Key"][len(source):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=OUTPUT_BUCKET, Key=item["Key"])["Body"].read())


def model_arn(model: Trained) -> str:
    return model.kit.model("1")["ModelArn"]


class AgentProcess:
    """`lookout-emulator edge-agent` in a child process, as a device runs it."""

    def __init__(self, components_dir: Path, socket_path: Path, *options: str) -> None:
        self.components_dir, self.socket_path = components_dir, socket_path
        self.target = f"unix://{socket_path}"
        self.log = socket_path.with_suffix(".log")
        self.command = [sys.executable, "-m", "emulator.cli", "edge-agent", "--components-dir", str(components_dir),
                        "--socket", str(socket_path), *options]

    def __enter__(self) -> AgentProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        self.ready = line.strip()  # "... listening on unix://<socket>[ and <host>:<port>]"
        if "listening on" not in line:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the agent did not start: {line}\n{self.log.read_text()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process.stdout.close()  # type: ignore[union-attr]

    def logs(self) -> str:
        return self.log.read_text()


def stub(target: str) -> pb2_grpc.EdgeAgentStub:
    return pb2_grpc.EdgeAgentStub(grpc.insecure_channel(target))


def describe(agent: pb2_grpc.EdgeAgentStub, name: str) -> Any:
    return agent.DescribeModel(pb2.DescribeModelRequest(model_component=name)).model_description


def wait_status(agent: pb2_grpc.EdgeAgentStub, name: str, timeout: float = 120) -> Any:
    """Poll DescribeModel, as AWS's clients do, until the model is neither STARTING nor STOPPING."""
    deadline = time.monotonic() + timeout
    while (described := describe(agent, name)).status in (pb2.STARTING, pb2.STOPPING):
        assert time.monotonic() < deadline, f"{name} still {pb2.ModelStatus.Name(described.status)}"
        time.sleep(0.05)
    return described


def running(agent: pb2_grpc.EdgeAgentStub, name: str) -> None:
    """Start the model unless it runs already."""
    if describe(agent, name).status != pb2.RUNNING:
        assert agent.StartModel(pb2.StartModelRequest(model_component=name)).status == pb2.STARTING
        described = wait_status(agent, name)
        assert described.status == pb2.RUNNING, described.status_message


def rpc_error(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call that must fail."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def bitmap(image: np.ndarray) -> Any:
    return pb2.Bitmap(width=image.shape[1], height=image.shape[0], byte_data=image.tobytes())


def detect(agent: pb2_grpc.EdgeAgentStub, name: str, image: np.ndarray, **request: Any) -> Any:
    return agent.DetectAnomalies(pb2.DetectAnomaliesRequest(model_component=name, bitmap=bitmap(image),
                                                            **request)).detect_anomaly_result


def painted(mask: np.ndarray) -> np.ndarray:
    """The pixels of an RGB mask that are not background (white)."""
    return (mask != WHITE).any(axis=2)


def variant_proto(field_number: int) -> str:
    """Our .proto as one of the published copies has it: AnomalyMaskParams with the single field
    ``shared_memory_handle`` numbered `field_number` (2: developer guide and DDA, 3: aws-samples)."""
    text = PROTO.read_text()
    message = re.search(r"message AnomalyMaskParams \{.*?\n\}", text, re.S)
    assert message is not None
    published = ("message AnomalyMaskParams {\n"
                 f"  SharedMemoryHandle shared_memory_handle = {field_number};\n}}")
    return text[:message.start()] + published + text[message.end():]


def generate_stubs(proto_text: str, directory: Path) -> Path:
    """edge_agent_pb2.py and edge_agent_pb2_grpc.py from `proto_text`, generated in `directory` as the
    developer guide tells client developers to (grpc_tools.protoc on edge-agent.proto)."""
    from grpc_tools import protoc

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "edge-agent.proto").write_text(proto_text)
    status = protoc.main(["grpc_tools.protoc", f"-I{directory}", f"--python_out={directory}",
                          f"--grpc_python_out={directory}", str(directory / "edge-agent.proto")])
    assert status == 0, "protoc failed"
    return directory
