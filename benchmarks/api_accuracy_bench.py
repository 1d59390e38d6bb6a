"""Accuracy, training time and latency through the API, as a Lookout for Vision user measures them.

    .venv/bin/python benchmarks/api_accuracy_bench.py [--cases NAME,...] [--json FILE]
    PYTHONPATH=/path/to/other/tree .venv/bin/python benchmarks/api_accuracy_bench.py   # another engine

Each case is a project of its own on one emulator, driven with boto3 only:

1. the images (and, for a segmentation case, colour mask PNGs) are uploaded to the emulator's S3,
   and SageMaker Ground Truth manifests are written there;
2. CreateDataset (train and test, or a single dataset), CreateModel, poll DescribeModel until
   TRAINED: the wall-clock time, the server's CPU time, and DescribeModel's Performance - precision,
   recall and F1 on the test images at the threshold the model chose from its training data;
3. StartModel (1 inference unit) -> HOSTED, then sequential DetectAnomalies calls after 3 warm-up
   calls: the first pass over the test images gives precision, recall and F1 of the IsAnomalous
   answers (anomaly positive); the latency p50 / p99 is over at least --latency-calls calls, cycling
   over the test images; StopModel.

Cases (``--cases``, default all):

- ``kolektorsdd-segmentation``: KolektorSDD (``../shared/datasets/kolektorsdd``) train (140 normal,
  29 anomaly) and test (100 normal, 21 anomaly) as separate datasets, every anomaly with its crack
  mask. The shared masks are single-channel 0/255; the service wants colour masks whose colours the
  manifest's ``internal-color-map`` names, so each is recoloured in memory (one label, ``crack``, red
  on black; bench_datasets.py) and uploaded as a PNG: nothing is written next to the dataset.
- ``kolektorsdd-classification``: the same images and split, image labels only.
- ``cookies-segmentation``, ``cookies-classification``: the getting-started cookies. Its separate
  test set has 8 anomalies, and a test dataset needs at least 10 (limits.md), so - as the getting-
  started guide, benchmarks/lifecycle_bench.py and tests/workflow do - the 63 training images form
  a single dataset that CreateModel splits itself (80/20 by class, fixed seed: DescribeModel's
  Performance is on its 12-image test split); the 22 separate test images (14 normal, 8 anomaly) are
  the ones sent to DetectAnomalies. The classification case drops the masks from the manifest.

Without --endpoint-url the script starts ``lookout-emulator serve`` in a child process on a free
127.0.0.1 port with a temporary data dir; the child inherits PYTHONPATH (this repository when
unset) and runs outside the repository, so PYTHONPATH chooses the emulator and engine measured.
A case that fails is reported with its error and the others still run.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import boto3
from bench_datasets import DEFAULT_ROOTS, LABEL_COLOURS, Picture, colour_mask, load_split, write_results
from botocore.config import Config
from lifecycle_bench import CREDENTIALS, LISTENING, cpu_delta, cpu_seconds, machine, percentile
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CASES = ("kolektorsdd-segmentation", "kolektorsdd-classification", "cookies-segmentation",
         "cookies-classification")
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}
TRAINING_TIMEOUT_S = 3 * 3600  # a slow engine on a busy machine is slow, not failed
WARM_UP_CALLS = 3


@dataclass
class Case:
    """What one benchmark project trains and tests on."""

    name: str
    train: list[Picture]
    test: list[Picture] | None  # None: a single dataset, which CreateModel splits itself
    detect: list[Picture]  # the images sent to DetectAnomalies
    notes: str = ""
    label_colors: dict[str, str] = field(default_factory=dict)  # empty for classification


def build_case(name: str, roots: dict[str, Path]) -> Case:
    dataset, kind = name.split("-")
    segmentation = kind == "segmentation"
    train, test = (load_split(dataset, split, roots[dataset]) for split in ("train", "test"))
    if not segmentation:
        train, test = ([replace(p, mask=None) for p in pictures] for pictures in (train, test))
    colours = LABEL_COLOURS[dataset] if segmentation else {}
    if dataset == "kolektorsdd":
        return Case(name, train, test, test, "separate train and test datasets", colours)
    return Case(name, train, None, test, "single dataset split by CreateModel (the 8 test anomalies are under the "
                "test dataset minimum of 10); DetectAnomalies on the 22 separate test images", colours)


# --- the API --------------------------------------------------------------------------------------

def manifest_line(uri: str, picture: Picture, mask_uri: str | None, label_colors: dict[str, str]) -> str:
    """A Ground Truth line: the classification label, and the mask when the picture has one."""
    line: dict[str, Any] = {
        "source-ref": uri,
        "anomaly-label": 1 if picture.label == "anomaly" else 0,
        "anomaly-label-metadata": {"class-name": picture.label, "human-annotated": "yes", "confidence": 1,
                                   "job-name": "labeling-job/api-accuracy-bench",
                                   "type": "groundtruth/image-classification"},
    }
    if mask_uri is not None:
        line["anomaly-mask-ref"] = mask_uri
        line["anomaly-mask-ref-metadata"] = {
            "internal-color-map": {str(i): {"class-name": name, "hex-color": colour}
                                   for i, (name, colour) in enumerate(label_colors.items())},
            "human-annotated": "yes", "job-name": "labeling-job/api-accuracy-bench",
            "type": "groundtruth/semantic-segmentation"}
    return json.dumps(line)


def wait_until(describe: Callable[[], dict[str, Any]], busy: tuple[str, ...], poll: float,
               timeout: float) -> tuple[dict[str, Any], float]:
    """Poll until the status leaves `busy`; (last description, seconds waited)."""
    started = time.perf_counter()
    while True:
        described = describe()
        waited = time.perf_counter() - started
        if described["Status"] not in busy:
            return described, waited
        if waited > timeout:
            raise TimeoutError(f"still {described['Status']} after {timeout:.0f} s")
        time.sleep(poll)


def confusion(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    """Counts, precision, recall and F1 of (predicted anomalous, actually anomalous) pairs."""
    tp = sum(p and a for p, a in pairs)
    fp = sum(p and not a for p, a in pairs)
    fn = sum(a and not p for p, a in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"images": len(pairs), "tp": tp, "fp": fp, "fn": fn, "tn": len(pairs) - tp - fp - fn,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def run_case(case: Case, endpoint_url: str, server_pid: int | None, latency_calls: int) -> dict[str, Any]:
    config = Config(retries={"max_attempts": 1}, read_timeout=300)
    lookout = boto3.client("lookoutvision", endpoint_url=endpoint_url, config=config, **CREDENTIALS)
    s3 = boto3.client("s3", endpoint_url=endpoint_url, **CREDENTIALS)
    project = bucket = f"bench-{case.name}-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)

    def upload(path: Path, key: str) -> str:
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=CONTENT_TYPES[path.suffix.lower()])
        return f"s3://{bucket}/{key}"

    def upload_mask(picture: Picture, key: str) -> str:
        """The mask as a colour PNG in the label's colour (KolektorSDD's are 0/255 single-channel)."""
        buffer = io.BytesIO()
        Image.fromarray(colour_mask(case.name.split("-")[0], picture.mask)).save(buffer, format="PNG")
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue(), ContentType="image/png")
        return f"s3://{bucket}/{key}"

    def manifest(dataset_type: str, pictures: list[Picture]) -> None:
        lines = []
        for i, picture in enumerate(pictures):
            uri = upload(picture.path, f"{dataset_type}/{picture.label}/{i:04d}-{picture.path.name}")
            mask_uri = None
            if picture.mask is not None:
                mask_uri = upload_mask(picture, f"{dataset_type}/masks/{i:04d}-{picture.mask.stem}.png")
            lines.append(manifest_line(uri, picture, mask_uri, case.label_colors))
        key = f"manifests/{dataset_type}.manifest"
        s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
        lookout.create_dataset(ProjectName=project, DatasetType=dataset_type, DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Key": key}}})
        dataset, _ = wait_until(lambda: lookout.describe_dataset(ProjectName=project, DatasetType=dataset_type)[
            "DatasetDescription"], ("CREATE_IN_PROGRESS",), 0.2, 600)
        if dataset["Status"] != "CREATE_COMPLETE":
            raise RuntimeError(f"{dataset_type} dataset: {dataset['Status']}: {dataset.get('StatusMessage')}")

    lookout.create_project(ProjectName=project)
    manifest("train", case.train)
    if case.test is not None:
        manifest("test", case.test)

    def model() -> dict[str, Any]:
        return lookout.describe_model(ProjectName=project, ModelVersion="1")["ModelDescription"]

    cpu = cpu_seconds(server_pid)
    lookout.create_model(ProjectName=project, OutputConfig={"S3Location": {"Bucket": bucket, "Prefix": "output/"}})
    trained, train_seconds = wait_until(model, ("TRAINING",), 0.5, TRAINING_TIMEOUT_S)
    result: dict[str, Any] = {
        "notes": case.notes,
        "train_images": {"normal": sum(p.label == "normal" for p in case.train),
                         "anomaly": sum(p.label == "anomaly" for p in case.train),
                         "masks": sum(p.mask is not None for p in case.train)},
        "test_dataset_images": None if case.test is None else len(case.test),
        "create_model_to_trained_s": round(train_seconds, 1),
        "training_server_cpu_s": cpu_delta(server_pid, cpu),
        "status": trained["Status"],
        "status_message": trained.get("StatusMessage"),
    }
    if trained["Status"] != "TRAINED":
        return result
    performance = trained.get("Performance", {})
    result["describe_model_performance"] = {k: round(v, 4) for k, v in performance.items()}

    lookout.start_model(ProjectName=project, ModelVersion="1", MinInferenceUnits=1)
    hosted, host_seconds = wait_until(model, ("STARTING_HOSTING",), 0.05, 600)
    if hosted["Status"] != "HOSTED":
        raise RuntimeError(f"StartModel: {hosted['Status']}: {hosted.get('StatusMessage')}")
    result["start_model_to_hosted_s"] = round(host_seconds, 2)
    try:
        bodies = [(p, p.path.read_bytes()) for p in case.detect]

        def detect(picture: Picture, body: bytes) -> dict[str, Any]:
            return lookout.detect_anomalies(ProjectName=project, ModelVersion="1", Body=body,
                                            ContentType=CONTENT_TYPES[picture.path.suffix.lower()])["DetectAnomalyResult"]

        for picture, body in bodies[:WARM_UP_CALLS]:
            detect(picture, body)
        latencies, pairs, masks_returned = [], [], 0
        cpu = cpu_seconds(server_pid)
        for call in range(max(len(bodies), latency_calls)):
            picture, body = bodies[call % len(bodies)]
            started = time.perf_counter()
            answer = detect(picture, body)
            latencies.append((time.perf_counter() - started) * 1000)
            if call < len(bodies):  # the first pass over the test images gives the accuracy
                pairs.append((bool(answer["IsAnomalous"]), picture.label == "anomaly"))
                masks_returned += "AnomalyMask" in answer
        result["detect_anomalies"] = {**confusion(pairs), "masks_returned": masks_returned}
        result["detect_latency_ms"] = {
            "calls": len(latencies), "p50": round(statistics.median(latencies), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "server_cpu_ms_per_call": cpu_delta(server_pid, cpu, 1000 / len(latencies))}
    finally:
        lookout.stop_model(ProjectName=project, ModelVersion="1")
        wait_until(model, ("STOPPING_HOSTING",), 0.1, 600)
    return result


# --- the server -----------------------------------------------------------------------------------

def start_server(data_dir: str, code_path: str) -> tuple[subprocess.Popen[str], str]:
    """`lookout-emulator serve` on a free port, importing the emulator and engine from `code_path`.

    It runs in `data_dir`, not the repository: with the repository as working directory, Python
    would import its packages ahead of PYTHONPATH and another tree could not be measured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": code_path}
    process = subprocess.Popen([sys.executable, "-m", "emulator.cli", "serve", "--port", "0", "--data-dir", data_dir],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=data_dir, env=env)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(LISTENING):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep draining its output
            return process, line[len(LISTENING):].strip()
    raise SystemExit(f"the emulator did not start (exit status {process.wait()})")


@contextmanager
def emulator(endpoint_url: str | None, data_dir: str, code_path: str) -> Iterator[tuple[int | None, str]]:
    """(server pid or None, endpoint URL): the running emulator named, or one started and stopped here."""
    if endpoint_url:
        yield None, endpoint_url
        return
    process, started_url = start_server(data_dir, code_path)
    try:
        yield process.pid, started_url
    finally:
        process.terminate()
        process.wait(60)


def code_tree(code_path: str) -> dict[str, Any]:
    """Which engine is measured: its folder and the git commit of the tree that holds it."""
    engine_dir = Path(code_path.split(os.pathsep)[0]) / "engine"
    spec = find_spec("engine")
    commit = subprocess.run(["git", "-C", str(engine_dir.parent), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(engine_dir.parent), "status", "--porcelain", "engine"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {"engine": str(engine_dir), "found_by_this_process": spec.origin if spec else None,
            "commit": commit + ("+uncommitted engine changes" if dirty else "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--kolektorsdd", type=Path, default=DEFAULT_ROOTS["kolektorsdd"])
    parser.add_argument("--cookies", type=Path, default=DEFAULT_ROOTS["cookies"])
    parser.add_argument("--endpoint-url", help="benchmark this running emulator instead of starting one")
    parser.add_argument("--latency-calls", type=int, default=100,
                        help="at least this many timed DetectAnomalies calls, cycling over the test images "
                        "(default 100)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    code_path = os.environ.get("PYTHONPATH") or str(REPO)
    results: dict[str, Any] = {"machine": machine(), "code": code_tree(code_path), "cases": {}}
    with tempfile.TemporaryDirectory(prefix="api-accuracy-bench-") as data_dir, \
            emulator(args.endpoint_url, data_dir, code_path) as (server_pid, endpoint_url):
        for name in names:
            print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            try:
                case = build_case(name, {"kolektorsdd": args.kolektorsdd, "cookies": args.cookies})
                results["cases"][name] = run_case(case, endpoint_url, server_pid, args.latency_calls)
            except Exception as exc:  # noqa: BLE001 - one failed case must not lose the others' figures
                results["cases"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps({name: results["cases"][name]}, indent=1), file=sys.stderr, flush=True)
    write_results(results, args.json)


if __name__ == "__main__":
    main()
