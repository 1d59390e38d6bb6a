"""A fleet of three nodes, black-box through boto3: three ``serve`` processes on one PostgreSQL database
(migrated first with ``db upgrade``) and one S3 store (a ``moto_server``), each with its own data dir,
started with the README's flags. Whatever node a client reaches, it sees one emulator: the same state,
one model per ClientToken, a training that outlives the node running it, hosted models answering on
every node until StopModel, and a node that comes back after a SIGKILL serving again.

One fleet serves the whole module (starting three servers costs more than the tests), so the tests
run in file order and each leaves the fleet with three live nodes. PostgreSQL only: with SQLite there
is no fleet (one server per data dir).
"""
from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from emulator.testing import TEST_CREDENTIALS
from tests.api.core_support import ServerProcess, fleet_node, migrated_database, moto_server
from tests.api.datasets_support import BUCKET
from tests.api.models_support import OUTPUT_BUCKET, ModelKit, encode, texture, with_defect
from tests.store.test_store import MAINTENANCE_URL, needs_postgres

pytestmark = [needs_postgres, pytest.mark.slow]

NODES = 3
HEARTBEAT_S = 0.5  # a dead node's jobs go back to the queue after three missed heartbeats
TAKE_OVER_S = 60  # what issue 23 asks for
SETTLE_S = 30  # how long every node may take to follow a change of hosting (reconciliation)
SIZE = (64, 64)  # the smallest images Lookout for Vision takes: training costs seconds
# One training of a one-class model on the smallest datasets a separate test dataset allows.
TRAIN_NORMALS, TEST_NORMALS, TEST_ANOMALIES = 10, 10, 10

T = TypeVar("T")


class Fleet:
    """The three nodes, each replaceable: a killed node is started again on its own data dir."""

    def __init__(self, root: Path, database_url: str, s3_endpoint: str) -> None:
        self.root, self.database_url, self.s3_endpoint = root, database_url, s3_endpoint
        with ThreadPoolExecutor(NODES) as pool:  # their start-ups overlap: each imports torch
            starts = [pool.submit(self._start, index) for index in range(NODES)]
        self.nodes = [start.result() for start in starts if start.exception() is None]
        failed = next((start.exception() for start in starts if start.exception() is not None), None)
        if failed is not None:
            self.close()  # the nodes that did start must not outlive the failure
            raise failed

    def _start(self, index: int) -> ServerProcess:
        return fleet_node(self.root, f"node-{index}", self.database_url, self.s3_endpoint, HEARTBEAT_S,
                          "--finetune-epochs", "0")

    def client(self, index: int) -> Any:
        return self.nodes[index].client("lookoutvision")

    def clients(self) -> list[Any]:
        return [self.client(index) for index in range(NODES)]

    def kill(self, index: int) -> None:
        """SIGKILL the node and whatever it started, as its machine dying would."""
        self.nodes[index].signal_group(signal.SIGKILL)
        assert self.nodes[index].process.wait(30) == -signal.SIGKILL

    def restart(self, index: int) -> None:
        self.nodes[index] = self._start(index)

    def close(self) -> None:
        for index, node in enumerate(self.nodes):
            if node.process.poll() is None:
                self.kill(index)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    assert MAINTENANCE_URL
    with pytest.MonkeyPatch.context() as monkeypatch, moto_server(monkeypatch) as (s3_endpoint, _), \
            migrated_database(MAINTENANCE_URL) as database_url:
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **TEST_CREDENTIALS)
        for bucket in (BUCKET, OUTPUT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        fleet = Fleet(tmp_path_factory.mktemp("fleet"), database_url, s3_endpoint)
        try:
            yield fleet
        finally:
            fleet.close()


def _kit(fleet: Fleet, index: int, project: str) -> ModelKit:
    s3 = boto3.client("s3", endpoint_url=fleet.s3_endpoint, region_name="us-east-1", **TEST_CREDENTIALS)
    return ModelKit(fleet.client(index), s3, project)


@pytest.fixture(scope="module")
def project(fleet: Fleet) -> str:
    """A trainable project made through two nodes: created on node 0, its datasets imported on node 1."""
    name = "fleet-trainable"
    fleet.client(0).create_project(ProjectName=name)
    kit = _kit(fleet, 1, name)
    kit.stage("train", normals=TRAIN_NORMALS, anomalies=0, size=SIZE)
    kit.stage("test", normals=TEST_NORMALS, anomalies=TEST_ANOMALIES, seed=100, size=SIZE)
    return name


def _alike(fleet: Fleet, read: Callable[[Any], T]) -> T:
    """What `read` returns through every node, asserted to be the same everywhere."""
    seen = [read(client) for client in fleet.clients()]
    assert all(view == seen[0] for view in seen), seen
    return seen[0]


def _without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "ResponseMetadata"}


def test_state_is_seen_alike_from_every_node(fleet: Fleet, project: str) -> None:
    fleet.client(2).tag_resource(ResourceArn=fleet.client(2).describe_project(ProjectName=project)[
        "ProjectDescription"]["ProjectArn"], Tags=[{"Key": "line", "Value": "3"}])
    projects = _alike(fleet, lambda c: _without_metadata(c.list_projects()))
    assert [p["ProjectName"] for p in projects["Projects"]] == [project]
    described = _alike(fleet, lambda c: _without_metadata(c.describe_project(ProjectName=project)))
    assert sorted(d["DatasetType"] for d in described["ProjectDescription"]["Datasets"]) == ["test", "train"]
    arn = described["ProjectDescription"]["ProjectArn"]
    assert _alike(fleet, lambda c: c.list_tags_for_resource(ResourceArn=arn)["Tags"]) == [
        {"Key": "line", "Value": "3"}]
    for dataset_type, total in (("train", TRAIN_NORMALS), ("test", TEST_NORMALS + TEST_ANOMALIES)):
        dataset = _alike(fleet, lambda c, kind=dataset_type: _without_metadata(
            c.describe_dataset(ProjectName=project, DatasetType=kind)))["DatasetDescription"]
        assert (dataset["Status"], dataset["ImageStats"]["Total"]) == ("CREATE_COMPLETE", total)
        entries = _alike(fleet, lambda c, kind=dataset_type: sorted(
            line for page in c.get_paginator("list_dataset_entries").paginate(ProjectName=project, DatasetType=kind)
            for line in page["DatasetEntries"]))
        assert len(entries) == total


def test_one_client_token_through_two_nodes_makes_one_model(fleet: Fleet) -> None:
    """CreateModel retried through another node (a load balancer's choice) with its ClientToken: one
    model, whose failure (an image gone from S3) every node reports alike."""
    name = "fleet-token"
    fleet.client(2).create_project(ProjectName=name)
    kit = _kit(fleet, 2, name)
    kit.stage_doomed()
    token = uuid.uuid4().hex
    output = {"S3Location": {"Bucket": OUTPUT_BUCKET, "Prefix": f"{name}/out"}}
    versions = {fleet.client(index).create_model(ProjectName=name, ClientToken=token, OutputConfig=output)[
        "ModelMetadata"]["ModelVersion"] for index in (0, 1)}
    assert versions == {"1"}
    assert kit.wait_model("1")["Status"] == "TRAINING_FAILED"
    models = _alike(fleet, lambda c: [(m["ModelVersion"], m["Status"]) for m in c.list_models(ProjectName=name)[
        "Models"]])
    assert models == [("1", "TRAINING_FAILED")]


def test_the_node_training_a_model_killed_the_others_finish_it(fleet: Fleet, project: str) -> None:
    """The node that took the training (its job log line says which) dies mid-training; another node
    takes the job over once the heartbeats stop, and the model ends TRAINED. The dead node, started
    again on its data dir, rejoins and serves."""
    version = fleet.client(0).create_model(ProjectName=project, OutputConfig={
        "S3Location": {"Bucket": OUTPUT_BUCKET, "Prefix": f"{project}/out"}})["ModelMetadata"]["ModelVersion"]
    subject = f"kind=train subject={project}/{version}"
    trainer = _wait_for(lambda: next((i for i, node in enumerate(fleet.nodes)
                                      if f"event=started {subject}" in node.output), None),
                        30, "no node started the training")
    fleet.nodes[trainer].signal_group(signal.SIGSTOP)  # at once: it must not finish before it dies
    survivor = (trainer + 1) % NODES
    kit = _kit(fleet, survivor, project)
    assert kit.model(version)["Status"] == "TRAINING", "the training ended before its node could be killed"
    fleet.kill(trainer)
    killed = time.monotonic()
    assert f"event=finished {subject}" not in fleet.nodes[trainer].output
    described = kit.wait_model(version, timeout=TAKE_OVER_S + 120)
    assert described["Status"] == "TRAINED", described
    taken = [moment for i, node in enumerate(fleet.nodes) if i != trainer
             if (moment := node.seen_at(f"event=taken_over {subject}")) is not None]
    assert len(taken) == 1, [node.output for node in fleet.nodes]  # exactly one node took it over
    assert taken[0] - killed < TAKE_OVER_S
    fleet.restart(trainer)
    assert _alike(fleet, lambda c: c.describe_model(ProjectName=project, ModelVersion=version)[
        "ModelDescription"]["Status"]) == "TRAINED"


@pytest.fixture(scope="module")
def trained(fleet: Fleet, project: str) -> str:
    """A TRAINED model version of `project`: the one the take-over test trained, else a new one."""
    kit = _kit(fleet, 0, project)
    versions = [m["ModelVersion"] for m in kit.lookout.list_models(ProjectName=project)["Models"]
                if m["Status"] in ("TRAINED", "TRAINING")]
    version = versions[0] if versions else kit.create_model()["ModelVersion"]
    assert kit.wait_model(version)["Status"] == "TRAINED"
    return version


def _wait_for(probe: Callable[[], T | None], timeout: float, failure: str) -> T:
    """Poll `probe` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while (found := probe()) is None:
        assert time.monotonic() < deadline, failure
        time.sleep(0.01)
    return found


NORMAL, ANOMALY = encode(texture(7, SIZE)), encode(with_defect(7, SIZE)[0])


def _detect(client: Any, project: str, version: str, body: bytes = NORMAL) -> dict[str, Any]:
    result: dict[str, Any] = client.detect_anomalies(ProjectName=project, ModelVersion=version, Body=body,
                                                     ContentType="image/png")["DetectAnomalyResult"]
    return result


def _answer(client: Any, project: str, version: str) -> str:
    """The node's answer to one DetectAnomalies call: "answered", or the error code it gave."""
    try:
        _detect(client, project, version)
        return "answered"
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])


def _every_node_answers(fleet: Fleet, project: str, version: str, expected: str) -> None:
    """Wait until every node gives `expected` to DetectAnomalies (nodes follow hosting changes within
    seconds, not at once)."""
    for index in range(NODES):
        client = fleet.client(index)
        _wait_for(lambda c=client: True if _answer(c, project, version) == expected else None, SETTLE_S,
                  f"node {index} does not give {expected} within {SETTLE_S} s")


def test_hosting_reaches_every_node(fleet: Fleet, project: str, trained: str) -> None:
    kit = _kit(fleet, 1, project)
    kit.host(trained)
    _every_node_answers(fleet, project, trained, "answered")
    verdicts = _alike(fleet, lambda c: (_detect(c, project, trained)["IsAnomalous"],
                                        _detect(c, project, trained, ANOMALY)["IsAnomalous"]))
    assert verdicts == (False, True)


def test_a_node_killed_under_detect_anomalies_leaves_the_others_answering(fleet: Fleet, project: str,
                                                                             trained: str) -> None:
    """Four clients stream DetectAnomalies round-robin over the three nodes; node 2 dies mid-stream.
    Every call to nodes 0 and 1 is answered, before, during and after; node 2, started again, answers too."""
    _every_node_answers(fleet, project, trained, "answered")
    config = Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)  # a refusal must show
    clients = [boto3.client("lookoutvision", endpoint_url=node.endpoint_url, region_name="us-east-1", config=config,
                            **TEST_CREDENTIALS) for node in fleet.nodes]
    streams, stop = 4, threading.Event()
    answers: list[tuple[float, int, str]] = []  # (when the call began, node, answer)

    def stream(first: int) -> None:
        for number in itertools.count(first, streams):
            if stop.is_set():
                return
            index, began = number % NODES, time.monotonic()
            try:
                _detect(clients[index], project, trained)
                answers.append((began, index, "answered"))
            except Exception as exc:  # noqa: BLE001 - a dead node's refusal is an answer of the stream
                answers.append((began, index, type(exc).__name__))

    def answered_since(moment: float, count: int) -> bool | None:
        return True if sum(began > moment for began, _, _ in answers) >= count else None

    with ThreadPoolExecutor(streams) as pool:
        running = [pool.submit(stream, first) for first in range(streams)]
        _wait_for(lambda: answered_since(0.0, 20), SETTLE_S, "the stream did not get going")
        fleet.kill(2)
        killed = time.monotonic()
        _wait_for(lambda: answered_since(killed, 30), SETTLE_S, "the stream stalled after the kill")
        stop.set()
    assert [run.exception() for run in running] == [None] * streams
    survivors = [answer for _, node, answer in answers if node != 2]
    assert survivors == ["answered"] * len(survivors)
    dead = {answer for began, node, answer in answers if node == 2 and began > killed}
    assert dead and "answered" not in dead, answers
    assert _kit(fleet, 0, project).model(trained)["Status"] == "HOSTED"  # the live nodes still hold it
    fleet.restart(2)
    _every_node_answers(fleet, project, trained, "answered")


def test_stop_model_stops_it_everywhere(fleet: Fleet, project: str, trained: str) -> None:
    kit = _kit(fleet, 2, project)
    assert kit.lookout.stop_model(ProjectName=project, ModelVersion=trained)["Status"] == "STOPPING_HOSTING"
    assert kit.wait_model(trained)["Status"] == "TRAINED"
    _every_node_answers(fleet, project, trained, "ConflictException")
    assert _alike(fleet, lambda c: c.describe_model(ProjectName=project, ModelVersion=trained)[
        "ModelDescription"]["Status"]) == "TRAINED"


def test_nothing_is_lost(fleet: Fleet, project: str) -> None:
    """After two SIGKILLs and restarts, every node (the restarted ones too) reports every project,
    dataset, model and image, and the S3 store still holds every uploaded image."""
    projects = _alike(fleet, lambda c: sorted(p["ProjectName"] for p in c.list_projects()["Projects"]))
    assert projects == ["fleet-token", "fleet-trainable"]
    models = _alike(fleet, lambda c: sorted((m["ModelVersion"], m["Status"])
                                            for m in c.list_models(ProjectName=project)["Models"]))
    assert models and all(status == "TRAINED" for _, status in models), models
    totals = _alike(fleet, lambda c: [c.describe_dataset(ProjectName=project, DatasetType=kind)["DatasetDescription"][
        "ImageStats"]["Total"] for kind in ("train", "test")])
    assert totals == [TRAIN_NORMALS, TEST_NORMALS + TEST_ANOMALIES]
    s3 = boto3.client("s3", endpoint_url=fleet.s3_endpoint, region_name="us-east-1", **TEST_CREDENTIALS)
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{project}/")
            for item in page.get("Contents", []) if item["Key"].endswith(".png")]
    assert len(keys) == TRAIN_NORMALS + TEST_NORMALS + TEST_ANOMALIES
