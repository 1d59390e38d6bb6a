"""Detect anomalies on a device through the Lookout for Vision Edge Agent, the way AWS's edge samples
did: gRPC over the agent's Unix socket, images read with OpenCV and sent as RGB888 bitmaps.

Written for: grpcio + protobuf with stubs generated from the agent's .proto (the developer guide's
"Setting up gRPC" step), opencv-python(-headless), numpy; in this repository's environment,
`pip install -e '.[edge]'` adds grpcio-tools and OpenCV. Run it next to the generated stubs:

    python -m grpc_tools.protoc -I<repo>/emulator/edge --python_out=. --grpc_python_out=. edge-agent.proto
    lookout-emulator edge-agent --components-dir components &          # on the device
    python edge_client.py my-component image.jpg [more.jpg ...] [--mask-dir masks]

It starts the model component unless it is running (polling DescribeModel until RUNNING), prints one
JSON line per image, writes segmentation masks (and overlays) to --mask-dir, and stops the model
again if it started it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import edge_agent_pb2 as pb2  # generated from edge-agent.proto
import grpc
import numpy as np
from edge_agent_pb2_grpc import EdgeAgentStub

SOCKET = "/tmp/aws.iot.lookoutvision.EdgeAgent.sock"  # noqa: S108 - where every edge client connects


def start(stub: EdgeAgentStub, component: str, timeout: float = 300) -> bool:
    """Start the component unless it is running; True if this call started it."""
    described = stub.DescribeModel(pb2.DescribeModelRequest(model_component=component)).model_description
    if described.status == pb2.RUNNING:
        return False
    stub.StartModel(pb2.StartModelRequest(model_component=component))
    deadline = time.monotonic() + timeout
    while True:
        described = stub.DescribeModel(pb2.DescribeModelRequest(model_component=component)).model_description
        if described.status == pb2.RUNNING:
            return True
        if described.status == pb2.FAILED or time.monotonic() > deadline:
            sys.exit(f"{component} did not start: {described.status_message}")
        time.sleep(0.2)


def detect(stub: EdgeAgentStub, component: str, path: Path, mask_dir: Path | None) -> dict:
    bgr = cv2.imread(str(path))
    if bgr is None:
        sys.exit(f"cannot read {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # the agent takes RGB888; OpenCV reads BGR
    height, width, _ = rgb.shape
    response = stub.DetectAnomalies(pb2.DetectAnomaliesRequest(
        model_component=component, bitmap=pb2.Bitmap(width=width, height=height, byte_data=rgb.tobytes())))
    result = response.detect_anomaly_result
    report = {"image": str(path), "is_anomalous": result.is_anomalous, "confidence": round(result.confidence, 4),
              "anomalies": {anomaly.name: {"hex_color": anomaly.pixel_anomaly.hex_color,
                                           "total_percentage_area": anomaly.pixel_anomaly.total_percentage_area}
                            for anomaly in result.anomalies}}
    if result.anomaly_mask.byte_data and mask_dir is not None:  # a segmentation model's RGB888 mask
        mask = np.frombuffer(result.anomaly_mask.byte_data, dtype=np.uint8).reshape(
            result.anomaly_mask.height, result.anomaly_mask.width, 3)
        mask_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(mask_dir / f"{path.stem}-mask.png"), cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))
        overlay = cv2.addWeighted(rgb, 0.7, mask, 0.3, 0)
        cv2.imwrite(str(mask_dir / f"{path.stem}-overlay.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        report["mask"] = str(mask_dir / f"{path.stem}-mask.png")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("component", help="the model component's name")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--socket", default=SOCKET, help=f"the agent's socket (default {SOCKET})")
    parser.add_argument("--mask-dir", type=Path, help="write segmentation masks and overlays here")
    args = parser.parse_args()
    with grpc.insecure_channel(f"unix://{args.socket}") as channel:
        stub = EdgeAgentStub(channel)
        started = start(stub, args.component)
        try:
            for path in args.images:
                print(json.dumps(detect(stub, args.component, path, args.mask_dir)), flush=True)
        finally:
            if started:
                stub.StopModel(pb2.StopModelRequest(model_component=args.component))


if __name__ == "__main__":
    main()
