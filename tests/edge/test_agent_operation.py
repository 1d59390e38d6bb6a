"""Running the agent: packages it must refuse (and say why), components copied in while it runs,
overload (RESOURCE_EXHAUSTED), TCP, the command line's failures, a light import path, and generated
stubs that match the .proto."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from emulator.edge import edge_agent_pb2 as pb2
from emulator.edge import edge_agent_pb2_grpc as pb2_grpc
from emulator.edge.package import ARCHIVE_NAME, MANIFEST_NAME
from tests.api.models_support import Trained
from tests.edge.edge_support import (
    PROTO,
    ROOT,
    AgentProcess,
    describe,
    detect,
    pixels,
    rpc_error,
    running,
    stub,
    wait_status,
)

# Broken copies of a good component, and the start of what the agent says about each.
BROKEN = {
    "no-version-folder": "has no version folder (such as 1.0.0/)",
    "future-format": "is package format version 99, written by a newer lookout-emulator",
    "other-format": "is not a lookout-emulator-model-package manifest",
    "not-json": "is not valid JSON",
    "incomplete-manifest": "lacks valid ModelType, Archive",
    "deep-manifest": "its JSON nests too deeply",
    "huge-manifest": "it is not a package manifest",
    "fifo-manifest": "is not a regular file",
}


def _break(folder: Path, how: str) -> None:
    version = folder / "1.0.0"
    manifest = json.loads((version / MANIFEST_NAME).read_text())
    if how == "no-version-folder":
        shutil.rmtree(version)
        (folder / "latest").mkdir()
    elif how == "future-format":
        manifest["FormatVersion"] = 99
    elif how == "other-format":
        manifest["Format"] = "something-else"
    elif how == "incomplete-manifest":
        del manifest["ModelType"], manifest["Archive"]
    if how == "not-json":
        (version / MANIFEST_NAME).write_text("{not json")
    elif how == "deep-manifest":
        (version / MANIFEST_NAME).write_text("[" * 400_000)
    elif how == "huge-manifest":
        (version / MANIFEST_NAME).write_text(json.dumps({**manifest, "Padding": "x" * 2_000_000}))
    elif how == "fifo-manifest":  # nothing ever writes to it: reading it would block forever
        (version / MANIFEST_NAME).unlink()
        os.mkfifo(version / MANIFEST_NAME)
    elif version.exists():
        (version / MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def lab(components_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent over a good component, a damaged copy of it and the BROKEN ones, with one model at
    a time, one waiting request per model and TCP too."""
    directory = tmp_path_factory.mktemp("lab")
    for name in ["good", "damaged", *BROKEN]:
        shutil.copytree(components_dir / "classifier", directory / name)
    for how in BROKEN:
        _break(directory / how, how)
    archive = directory / "damaged" / "1.0.0" / ARCHIVE_NAME
    archive.write_bytes(archive.read_bytes()[:-100])  # a copy that stopped short
    shutil.copytree(components_dir / "classifier", directory / "fifo-archive")
    (directory / "fifo-archive" / "1.0.0" / ARCHIVE_NAME).unlink()
    os.mkfifo(directory / "fifo-archive" / "1.0.0" / ARCHIVE_NAME)
    with AgentProcess(directory, tmp_path_factory.mktemp("lab-agent") / "agent.sock", "--queue-size", "1",
                      "--max-running", "1", "--listen", "127.0.0.1:0") as process:
        yield process


@pytest.fixture(scope="module")
def client(lab: AgentProcess) -> pb2_grpc.EdgeAgentStub:
    return stub(lab.target)


def test_unreadable_packages_are_listed_as_failed_with_the_reason(client: Any) -> None:
    listed = {model.model_component: model for model in client.ListModels(pb2.ListModelsRequest()).models}
    for name, reason in BROKEN.items():
        assert listed[name].status == pb2.FAILED and reason in listed[name].status_message, name
        assert listed[name].lookout_vision_model_arn == ""
        assert client.StartModel(pb2.StartModelRequest(model_component=name)).status == pb2.STARTING
        described = wait_status(client, name)
        assert described.status == pb2.FAILED and reason in described.status_message, name
    assert "Upgrade lookout-emulator" in listed["future-format"].status_message


def test_an_archive_that_is_no_regular_file_fails_the_start(client: Any) -> None:
    assert client.StartModel(pb2.StartModelRequest(model_component="fifo-archive")).status == pb2.STARTING
    described = wait_status(client, "fifo-archive", timeout=30)  # a FIFO read would block the loader for good
    assert described.status == pb2.FAILED and "is not a regular file" in described.status_message


def test_bad_folders_leave_the_others_working_and_sigterm_stops_the_agent(components_dir: Path,
                                                                          tmp_path: Path) -> None:
    """A FIFO manifest, deep JSON and a folder name no packaging job gives: each is its own FAILED
    component; the good one is listed and described, and SIGTERM ends the agent promptly."""
    directory = tmp_path / "components"
    for name in ("good", "fifo-manifest", "deep-manifest", "bad name"):
        shutil.copytree(components_dir / "classifier", directory / name)
    for how in ("fifo-manifest", "deep-manifest"):
        _break(directory / how, how)
    with AgentProcess(directory, tmp_path / "agent.sock") as agent:
        client = stub(agent.target)
        listed = {m.model_component: m for m in client.ListModels(pb2.ListModelsRequest(), timeout=10).models}
        assert listed["good"].status == pb2.STOPPED and listed["good"].lookout_vision_model_arn
        assert listed["bad name"].status == pb2.FAILED
        assert "'bad name' is not a valid component name" in listed["bad name"].status_message
        assert {listed[name].status for name in ("fifo-manifest", "deep-manifest")} == {pb2.FAILED}
        assert describe(client, "good").status == pb2.STOPPED
        agent.process.terminate()
        assert agent.process.wait(timeout=15) == 0
    assert "Traceback" not in agent.logs()


def test_damaged_archive_fails_to_start_until_copied_again(lab: AgentProcess, client: Any,
                                                          components_dir: Path) -> None:
    assert describe(client, "damaged").status == pb2.STOPPED  # the manifest is fine; the archive is checked on start
    assert client.StartModel(pb2.StartModelRequest(model_component="damaged")).status == pb2.STARTING
    described = wait_status(client, "damaged")
    assert described.status == pb2.FAILED
    assert "does not match its manifest" in described.status_message and "copy the component folder again" in \
        described.status_message
    good = components_dir / "classifier" / "1.0.0" / ARCHIVE_NAME
    shutil.copyfile(good, lab.components_dir / "damaged" / "1.0.0" / ARCHIVE_NAME)
    try:
        running(client, "damaged")  # a FAILED model may be started again
    finally:
        if describe(client, "damaged").status == pb2.RUNNING:
            client.StopModel(pb2.StopModelRequest(model_component="damaged"))


def test_components_copied_in_or_removed_while_running(lab: AgentProcess, client: Any, components_dir: Path) -> None:
    late = lab.components_dir / "late"
    shutil.copytree(components_dir / "segmenter", late)
    try:
        assert describe(client, "late").status == pb2.STOPPED
        assert "late" in [model.model_component for model in client.ListModels(pb2.ListModelsRequest()).models]
    finally:
        shutil.rmtree(late)
    assert "late" not in [model.model_component for model in client.ListModels(pb2.ListModelsRequest()).models]
    assert rpc_error(lambda: describe(client, "late"))[0] == grpc.StatusCode.NOT_FOUND


def test_overload_is_resource_exhausted(client: Any, models: dict[str, Trained]) -> None:
    """One request waiting at most: a burst gets some answers and RESOURCE_EXHAUSTED for the rest."""
    running(client, "good")
    request = pb2.DetectAnomaliesRequest(
        model_component="good", bitmap=pb2.Bitmap(width=96, height=96,
                                                  byte_data=pixels(models["classification"].normals[0]).tobytes()))
    futures = [client.DetectAnomalies.future(request) for _ in range(24)]
    errors = [future.exception(timeout=120) for future in futures]
    answered = [future for future, error in zip(futures, errors, strict=True) if error is None]
    refused = [error for error in errors if error is not None]
    assert answered and all(not future.result().detect_anomaly_result.is_anomalous for future in answered)
    assert refused and {error.code() for error in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert any("cannot keep up" in error.details() for error in refused)
    assert not detect(client, "good", pixels(models["classification"].normals[0])).is_anomalous  # still serving


def test_max_running_is_resource_exhausted(lab: AgentProcess, client: Any, components_dir: Path) -> None:
    running(client, "good")
    shutil.copytree(components_dir / "classifier", lab.components_dir / "second")
    code, message = rpc_error(lambda: client.StartModel(pb2.StartModelRequest(model_component="second")))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max-running 1" in message
    assert describe(client, "second").status == pb2.STOPPED


def test_tcp_listener(lab: AgentProcess) -> None:
    address = lab.ready.rsplit(" and ", 1)[1]  # the port --listen 127.0.0.1:0 got
    assert address.startswith("127.0.0.1:") and not address.endswith(":0")
    tcp = stub(address)
    names = [model.model_component for model in tcp.ListModels(pb2.ListModelsRequest(), timeout=10).models]
    assert "good" in names


# ----------------------------------------------------------------------------------- command line
def _agent_command(*arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "emulator.cli", "edge-agent", *arguments], capture_output=True,
                          text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def test_socket_in_use_or_not_a_socket_is_refused(lab: AgentProcess, tmp_path: Path) -> None:
    done = _agent_command("--components-dir", str(tmp_path), "--socket", str(lab.socket_path))
    assert done.returncode == 1 and "Another process is serving on" in done.stderr
    plain = tmp_path / "file.sock"
    plain.write_text("")
    done = _agent_command("--components-dir", str(tmp_path), "--socket", str(plain))
    assert done.returncode == 1 and "exists and is not a socket" in done.stderr
    done = _agent_command("--components-dir", str(tmp_path), "--socket", str(tmp_path / "missing" / "a.sock"))
    assert done.returncode == 1 and "does not exist" in done.stderr
    done = _agent_command("--components-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "nowhere is not a directory" in done.stderr
    done = _agent_command()
    assert done.returncode == 2 and "needs --components-dir" in done.stderr
    done = _agent_command("--components-dir", str(tmp_path), "--queue-size", "0")
    assert done.returncode == 2 and "--queue-size: must be at least 1" in done.stderr
    done = _agent_command("--components-dir", str(tmp_path), "--device", "tpu")
    assert done.returncode == 2 and "'tpu' is not one of cpu, cuda, auto" in done.stderr
    done = _agent_command("--components-dir", str(tmp_path), "--listen", "127.0.0.1:99999")
    assert done.returncode == 2 and "a port from 0 to 65535" in done.stderr
    done = _agent_command("--components-dir", str(tmp_path), "--socket", str(tmp_path / "tcp.sock"),
                          "--listen", "no-such-host.invalid:5000")
    assert done.returncode == 1 and "Cannot listen on no-such-host.invalid:5000" in done.stderr
    assert not (tmp_path / "tcp.sock").exists()


def test_stale_socket_is_replaced_and_unknown_start_refused(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))  # bound, never listening: what a killed agent leaves behind
    left.close()
    done = _agent_command("--components-dir", str(tmp_path), "--socket", str(path), "--start", "nothing-here")
    assert done.returncode == 1 and "--start nothing-here: There is no model component nothing-here" in done.stderr
    assert not path.exists()  # it took the stale socket over, then cleaned up after itself


def test_agent_import_path_is_light() -> None:
    """Running the agent imports neither the web stack nor (until a model starts) torch."""
    code = ("import sys, emulator.cli, emulator.edge.agent; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'werkzeug', 'moto', 'boto3', "
            "'botocore', 'waitress', 'marshmallow', 'torch', 'sqlite3'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    """emulator/edge/edge_agent_pb2*.py were generated from edge-agent.proto (regenerate after editing it)."""
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    status = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"--descriptor_set_out={tmp_path / 'set.pb'}",
                          f"--grpc_python_out={tmp_path}", str(PROTO.relative_to(ROOT))])
    assert status == 0
    generated = descriptor_pb2.FileDescriptorSet.FromString((tmp_path / "set.pb").read_bytes()).file[0]
    for message in generated.message_type:  # the Python generator leaves the JSON names out
        for field in message.field:
            field.ClearField("json_name")
    assert descriptor_pb2.FileDescriptorProto.FromString(pb2.DESCRIPTOR.serialized_pb) == generated

    def without_versions(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if "GRPC_GENERATED_VERSION =" not in line]

    grpc_module = "emulator/edge/edge_agent_pb2_grpc.py"
    assert without_versions(tmp_path / grpc_module) == without_versions(ROOT / grpc_module)


def test_cuda_without_a_gpu_fails_the_start_with_the_reason(components_dir: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda would run")
    with AgentProcess(components_dir, tmp_path / "agent.sock", "--device", "cuda") as process:
        client = stub(process.target)
        assert client.StartModel(pb2.StartModelRequest(model_component="classifier")).status == pb2.STARTING
        described = wait_status(client, "classifier")
        assert described.status == pb2.FAILED and "torch sees no CUDA device" in described.status_message


def test_component_names_follow_the_service_models_rule() -> None:
    """The agent accepts exactly the names StartModelPackagingJob can give a component."""
    import re

    from emulator.api.servicemodel import service_model
    from emulator.edge.package import COMPONENT_NAME

    shape = service_model().shape_for("ComponentName")
    pattern, low, high = re.compile(shape.metadata["pattern"]), shape.metadata["min"], shape.metadata["max"]
    for name in ("a", "A-b_c.9", "x" * 128, "x" * 129, "", "a b", "a/b", "..", "é", "-", "a\n", "com:ponent"):
        service = pattern.fullmatch(name) is not None and low <= len(name) <= high
        assert (COMPONENT_NAME.fullmatch(name) is not None) == service, name
