"""Jobs on PostgreSQL: two ``serve`` processes share one database and one S3 store (a ``moto_server``);
a job outlives the node that ran it, and a ClientToken means one resource whichever node it reaches.

PostgreSQL only: the database is the queue (with SQLite, jobs run in-process; tests/unit/test_jobs.py).
"""
from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import boto3
from procrastinate import App, SyncPsycopgConnector

from emulator.jobqueue import TASK
from emulator.store.database import libpq_url
from emulator.testing import TEST_CREDENTIALS
from tests.api.core_support import ServerProcess, fleet_node
from tests.api.datasets_support import BUCKET, DatasetKit, labelled
from tests.store.test_store import needs_postgres

pytestmark = needs_postgres

HEARTBEAT_S = 0.5  # a dead node's jobs are taken over after three missed heartbeats, seconds here
TAKE_OVER_S = 60  # what the issue asks for (with the default heartbeat, about 40 s)
IMAGES = 150  # enough that the import still runs when node A is frozen


def _node(tmp_path: Path, name: str, database_url: str, s3_endpoint: str) -> ServerProcess:
    return fleet_node(tmp_path, name, database_url, s3_endpoint, HEARTBEAT_S)


def _running_jobs(database_url: str) -> int:
    with App(connector=SyncPsycopgConnector(conninfo=libpq_url(database_url))).open() as queue:
        return len(queue.job_manager.list_jobs(task=TASK, status="doing"))


def test_a_node_killed_mid_import_loses_nothing(tmp_path, database_url, s3_endpoint):
    """Node B, started while node A holds the import (so B's start-up recovery has nothing to do with
    it), takes the import over once A's heartbeat stops."""
    node_a = _node(tmp_path, "a", database_url, s3_endpoint)
    try:
        _kill_mid_import(tmp_path, node_a, database_url, s3_endpoint)
    finally:
        node_a.process.kill()  # whatever happened: no server outlives its test
        node_a.process.wait(30)


def _kill_mid_import(tmp_path: Path, node_a: ServerProcess, database_url: str, s3_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **TEST_CREDENTIALS)
    kit = DatasetKit(node_a.client("lookoutvision"), s3, "takeover")
    kit.s3.create_bucket(Bucket=BUCKET)
    kit.lookout.create_project(ProjectName="takeover")
    manifest = kit.put_manifest([labelled(ref, "normal") for ref in kit.images(IMAGES)])
    kit.lookout.create_dataset(ProjectName="takeover", DatasetType="train",
                               DatasetSource={"GroundTruthManifest": {"S3Object": manifest}})
    deadline = time.monotonic() + 30
    while not _running_jobs(database_url):
        assert time.monotonic() < deadline, "node A did not start the import:\n" + node_a.output
        time.sleep(0.01)
    node_a.process.send_signal(signal.SIGSTOP)  # frozen mid-import, until B runs
    node_b = _node(tmp_path, "b", database_url, s3_endpoint)
    try:
        node_a.process.kill()  # SIGKILL: no shutdown code runs
        assert node_a.process.wait(30) == -signal.SIGKILL
        killed = time.monotonic()
        assert "event=finished kind=dataset" not in node_a.output
        kit.lookout = node_b.client("lookoutvision")
        described = kit.wait("train", timeout=TAKE_OVER_S)
        assert time.monotonic() - killed < TAKE_OVER_S
        assert (described["Status"], described["ImageStats"]["Total"]) == ("CREATE_COMPLETE", IMAGES)
        assert "event=taken_over kind=dataset subject=takeover/train" in node_b.output
        assert _running_jobs(database_url) == 0
    finally:
        assert node_b.stop(signal.SIGTERM) == 0


def test_one_client_token_through_two_nodes_makes_one_resource(tmp_path, database_url, s3_endpoint):
    nodes = [_node(tmp_path, name, database_url, s3_endpoint) for name in ("a", "b")]
    try:
        clients = [node.client("lookoutvision") for node in nodes]
        token = uuid.uuid4().hex
        arns = {client.create_project(ProjectName="shared", ClientToken=token)["ProjectMetadata"]["ProjectArn"]
                for client in clients}
        assert len(arns) == 1
        created = [client.create_dataset(ProjectName="shared", DatasetType="train", ClientToken=token)
                   ["DatasetMetadata"]["DatasetType"] for client in clients]
        assert created == ["train", "train"]
        for client in clients:
            assert [p["ProjectName"] for p in client.list_projects()["Projects"]] == ["shared"]
            datasets = client.describe_project(ProjectName="shared")["ProjectDescription"]["Datasets"]
            assert [d["DatasetType"] for d in datasets] == ["train"]
    finally:
        for node in nodes:
            assert node.stop(signal.SIGTERM) == 0
