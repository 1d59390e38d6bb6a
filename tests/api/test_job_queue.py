"""Jobs on PostgreSQL: two ``serve`` processes share one database and one S3 store (a ``moto_server``);
a job outlives the node that ran it, and a ClientToken means one resource whichever node it reaches.

PostgreSQL only: the database is the queue (with SQLite, jobs run in-process; tests/unit/test_jobs.py).
"""
from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
from procrastinate import App, SyncPsycopgConnector

from emulator.jobqueue import GENERAL_QUEUE, QUEUES, TASK
from emulator.jobs import handler_name
from emulator.services import datasets
from emulator.store.database import libpq_url
from emulator.testing import TEST_CREDENTIALS
from tests.api.core_support import ServerProcess, fleet_node
from tests.api.datasets_support import BUCKET, DatasetKit, labelled
from tests.api.models_support import ModelKit, new_kit
from tests.store.test_store import needs_postgres

pytestmark = needs_postgres

HEARTBEAT_S = 0.5  # a dead node's jobs are taken over after three missed heartbeats, seconds here
TAKE_OVER_S = 60  # what the issue asks for (with the default heartbeat, about 40 s)
IMAGES = 150  # enough that the import still runs when node A is frozen


def _node(tmp_path: Path, name: str, database_url: str, s3_endpoint: str, *flags: str) -> ServerProcess:
    return fleet_node(tmp_path, name, database_url, s3_endpoint, HEARTBEAT_S, *flags)


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
        node_b.stop_cleanly(signal.SIGTERM)


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
            node.stop_cleanly(signal.SIGTERM)


def test_each_job_kind_runs_on_the_nodes_that_take_it_and_progress_shows_on_every_node(tmp_path, database_url,
                                                                                      s3_endpoint):
    """A training node (--job-kinds train) and an import node (dataset,package): CreateDataset through the
    training node is imported by the other, CreateModel through the import node trains on the training
    node, and the import node shows the training's progress (DescribeModel and the console's model page)."""
    trainer = _node(tmp_path, "trainer", database_url, s3_endpoint, "--job-kinds", "train")
    importer = _node(tmp_path, "importer", database_url, s3_endpoint, "--job-kinds", "dataset,package")
    try:
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **TEST_CREDENTIALS)
        kit = new_kit(trainer.client("lookoutvision"), s3, "kinds")
        kit.stage("train", normals=40, anomalies=20)
        assert "event=finished kind=dataset subject=kinds/train outcome=succeeded" in importer.output
        assert "kind=dataset" not in trainer.output
        kit.lookout = importer.client("lookoutvision")
        version = kit.create_model()["ModelVersion"]
        seen = _progress_seen(importer, kit, version)
        assert kit.wait_model(version)["Status"] == "TRAINED"
        assert "event=finished kind=train subject=kinds/1 outcome=succeeded" in trainer.output
        assert "kind=train" not in importer.output
        message, page = seen
        assert re.fullmatch(r"Training in progress: .+ \(\d+%\)\.", message), message
        assert page["stage"] and page["started"] and 0 <= page["progress"] <= 1, page
    finally:
        for node in (trainer, importer):
            node.stop_cleanly(signal.SIGTERM)


def test_a_job_queued_by_the_release_before_job_kinds_runs_on_a_node_of_its_kind(tmp_path, database_url,
                                                                                 s3_endpoint):
    """Before --job-kinds, dataset and packaging jobs waited in one general queue: a node that does not
    take a job's kind moves it to its kind's queue, where a node that does runs it."""
    subject = "gone/train"  # a dataset that no longer exists: its job, run, ends skipped
    with App(connector=SyncPsycopgConnector(conninfo=libpq_url(database_url))).open() as queue:
        queue.configure_task(TASK, queue=GENERAL_QUEUE, lock=f"dataset:{subject}").defer(
            kind="dataset", subject=subject, handler=handler_name(datasets._run_job), args=["gone", "train"],
            continued=False, queued_at=time.time())
        trainer = _node(tmp_path, "trainer", database_url, s3_endpoint, "--job-kinds", "train")
        try:
            deadline = time.monotonic() + 30
            while not queue.job_manager.list_jobs(task=TASK, queue=QUEUES["dataset"], status="todo"):
                assert time.monotonic() < deadline, "the job was not moved:\n" + trainer.output
                time.sleep(0.05)
            importer = _node(tmp_path, "importer", database_url, s3_endpoint, "--job-kinds", "dataset")
            try:
                importer.wait_for(f"event=finished kind=dataset subject={subject} outcome=skipped",
                                  timeout=deadline + 30 - time.monotonic())  # the test's bound, as before
            finally:
                importer.stop_cleanly(signal.SIGTERM)
            assert "kind=dataset" not in trainer.output
        finally:
            trainer.stop_cleanly(signal.SIGTERM)


def _progress_seen(node: ServerProcess, kit: ModelKit, version: str) -> tuple[str, dict[str, Any]]:
    """The StatusMessage and the console's live figures of a training, from `node`, once they show a step."""
    deadline = time.monotonic() + 120
    url = f"{node.endpoint_url}/console/projects/{kit.project}/models/{version}/status.json"
    while True:
        described = kit.model(version)
        assert described["Status"] == "TRAINING", described
        if "%" in described["StatusMessage"]:
            with urllib.request.urlopen(url) as response:
                return described["StatusMessage"], json.load(response)
        assert time.monotonic() < deadline, "no progress seen"
        time.sleep(0.05)
