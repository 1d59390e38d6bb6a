"""Clients as users have them, each in its own process with stubs generated from a .proto: the
published copies' two numbers of anomaly_mask_params' handle, and a client written like AWS's edge
samples (client_examples/edge_client.py: OpenCV, BGR->RGB, the RGB888 mask)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from emulator.edge import edge_agent_pb2 as pb2
from tests.api.models_support import SIZE, Trained
from tests.edge.edge_support import PROTO, ROOT, AgentProcess, describe, generate_stubs, painted, stub, variant_proto

# A client of one published copy of the .proto: the pixels and the mask in shared memory.
VARIANT_CLIENT = """
import json, sys, time
import grpc
import edge_agent_pb2 as pb2
from edge_agent_pb2_grpc import EdgeAgentStub
from multiprocessing import shared_memory

target, component, image_file = sys.argv[1:4]
width, height = {size}
image = open(image_file, "rb").read()
memory = shared_memory.SharedMemory(create=True, size=2 * len(image))
try:
    memory.buf[:len(image)] = image
    with grpc.insecure_channel(target) as channel:
        stub = EdgeAgentStub(channel)
        def status():
            return stub.DescribeModel(pb2.DescribeModelRequest(model_component=component)).model_description.status
        if status() != pb2.RUNNING:
            stub.StartModel(pb2.StartModelRequest(model_component=component))
            while status() == pb2.STARTING:
                time.sleep(0.1)
        result = stub.DetectAnomalies(pb2.DetectAnomaliesRequest(
            model_component=component,
            bitmap=pb2.Bitmap(width=width, height=height, shared_memory_handle=pb2.SharedMemoryHandle(
                name=memory.name, offset=0, size=len(image))),
            anomaly_mask_params=pb2.AnomalyMaskParams(shared_memory_handle=pb2.SharedMemoryHandle(
                name=memory.name, offset=len(image), size=len(image))))).detect_anomaly_result
    where = result.anomaly_mask.shared_memory_handle
    print(json.dumps({{"is_anomalous": result.is_anomalous, "mask_offset": where.offset, "mask_size": where.size,
                      "anomalies": [a.name for a in result.anomalies],
                      "mask": bytes(memory.buf[len(image):]).hex()}}))
finally:
    memory.close()
    memory.unlink()
"""


@pytest.fixture(scope="module")
def image_files(models: dict[str, Trained], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An anomalous and a normal held-out image of the segmentation model: raw RGB888 and PNG."""
    folder = tmp_path_factory.mktemp("images")
    files = {}
    model = models["segmentation"]
    for name, png in (("anomaly", model.anomalies[0][0]), ("normal", model.normals[0])):
        (folder / f"{name}.png").write_bytes(png)
        (folder / f"{name}.rgb").write_bytes(np.asarray(Image.open(folder / f"{name}.png").convert("RGB")).tobytes())
        files[name], files[f"{name}-raw"] = folder / f"{name}.png", folder / f"{name}.rgb"
    return files


def run_client(stubs: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Run a client in a fresh interpreter that finds the generated stubs as AWS's samples did: beside it."""
    env = {**os.environ, "PYTHONPATH": str(stubs)}
    done = subprocess.run([sys.executable, *command], cwd=stubs, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"client failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.parametrize("field_number", [2, 3])
def test_clients_of_both_published_field_numbers(agent: AgentProcess, image_files: dict[str, Path], tmp_path: Path,
                                                 field_number: int) -> None:
    """Field 2 (developer guide, DefectDetectionApplication) and field 3 (aws-samples edge clients):
    either way the mask lands in the caller's shared memory."""
    proto = variant_proto(field_number)
    if field_number == 3:  # that copy predates DDA's result fields; a client of it must not mind them
        proto = "\n".join(line for line in proto.splitlines() if "anomaly_score" not in line
                          and "anomaly_threshold" not in line)
    stubs = generate_stubs(proto, tmp_path / f"field-{field_number}")
    (stubs / "client.py").write_text(VARIANT_CLIENT.format(size=SIZE))
    done = run_client(stubs, "client.py", agent.target, "segmenter", str(image_files["anomaly-raw"]))
    result = json.loads(done.stdout)
    nbytes = SIZE[0] * SIZE[1] * 3
    assert result["is_anomalous"] is True and result["anomalies"][0] == "background"
    assert (result["mask_offset"], result["mask_size"]) == (nbytes, nbytes)
    mask = np.frombuffer(bytes.fromhex(result["mask"]), np.uint8).reshape(SIZE[1], SIZE[0], 3)
    assert painted(mask).any()


def test_client_written_like_aws_edge_samples(agent: AgentProcess, image_files: dict[str, Path],
                                              tmp_path: Path) -> None:
    """client_examples/edge_client.py with stubs generated from the agent's .proto: StartModel, poll
    DescribeModel, DetectAnomalies on OpenCV images converted BGR->RGB, the RGB888 mask, StopModel."""
    client = stub(agent.target)
    if describe(client, "segmenter").status == pb2.RUNNING:
        client.StopModel(pb2.StopModelRequest(model_component="segmenter"))
    stubs = generate_stubs(PROTO.read_text(), tmp_path / "stubs")
    example = ROOT / "client_examples" / "edge_client.py"
    done = run_client(stubs, str(example), "segmenter", str(image_files["anomaly"]), str(image_files["normal"]),
                      "--socket", str(agent.socket_path), "--mask-dir", str(tmp_path / "masks"))
    anomalous, normal = (json.loads(line) for line in done.stdout.splitlines())
    assert anomalous["is_anomalous"] is True and normal["is_anomalous"] is False
    assert list(anomalous["anomalies"]) == ["background", "scratch"]
    areas = [entry["total_percentage_area"] for entry in anomalous["anomalies"].values()]
    assert sum(areas) == pytest.approx(1, abs=1e-5)
    mask = cv2.cvtColor(cv2.imread(anomalous["mask"]), cv2.COLOR_BGR2RGB)
    assert mask.shape == (SIZE[1], SIZE[0], 3)
    colour = anomalous["anomalies"]["scratch"]["hex_color"]
    assert {tuple(int(v) for v in c) for c in np.unique(mask.reshape(-1, 3), axis=0)} == \
        {(255, 255, 255), tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))}
    assert describe(client, "segmenter").status == pb2.STOPPED  # the example stopped the model it started
