"""Health, readiness and metrics endpoints, and the job log lines, over HTTP against real servers."""
from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from emulator.testing import LocalEmulator
from tests.access.access_support import CREDENTIALS, FULL, READ_ONLY, make_client
from tests.api.core_support import moto_server, raw_request, sqlite_file_only
from tests.api.datasets_support import BUCKET, DatasetKit, labelled

METRICS_TOKEN = "scrape-token-0123456789abcdef"  # noqa: S105 - a test server's token


def get_json(endpoint_url: str, path: str, **headers: str) -> tuple[int, dict[str, Any]]:
    status, _, body = raw_request(endpoint_url, "GET", path, headers=headers)
    return status, json.loads(body)


def scrape(endpoint_url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    status, _, body = raw_request(endpoint_url, "GET", "/metrics", headers=headers)
    assert status == 200, body
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode()) for sample in family.samples}


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def signed_get(endpoint_url: str, path: str, key: tuple[str, str]) -> tuple[int, bytes]:
    """GET `path` signed with SigV4 for lookoutvision, as any SDK signs (Prometheus cannot)."""
    request = botocore.awsrequest.AWSRequest(method="GET", url=endpoint_url + path)
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(*key), "lookoutvision", "us-east-1").add_auth(request)
    status, _, body = raw_request(endpoint_url, "GET", path, headers=dict(request.headers.items()))
    return status, body


# --------------------------------------------------------------------------------------- probes
def test_healthz_and_readyz_answer_unsigned_requests(emulator: LocalEmulator) -> None:
    assert get_json(emulator.endpoint_url, "/healthz") == (200, {"status": "alive"})
    assert get_json(emulator.endpoint_url, "/readyz") == (
        200, {"status": "ready", "checks": {"database": "pass", "schema": "pass", "s3": "pass"}})
    status, headers, body = raw_request(emulator.endpoint_url, "HEAD", "/readyz")
    assert (status, body, headers["cache-control"]) == (200, b"", "no-store")


def test_probes_skip_the_host_check_the_api_applies(emulator: LocalEmulator) -> None:
    """Kubernetes probes connect by the pod's address, which is not a name the server answers to."""
    status, _, _ = raw_request(emulator.endpoint_url, "GET", "/2020-11-20/projects", headers={"Host": "10.1.2.3:5010"})
    assert status == 403
    assert get_json(emulator.endpoint_url, "/healthz", Host="10.1.2.3:5010")[0] == 200


def test_a_bucket_named_like_a_probe_stays_usable_by_signed_s3_requests(s3: Any, emulator: LocalEmulator) -> None:
    s3.create_bucket(Bucket="healthz")
    s3.put_object(Bucket="healthz", Key="readyz", Body=b"object")
    assert [item["Key"] for item in s3.list_objects_v2(Bucket="healthz")["Contents"]] == ["readyz"]
    assert s3.get_object(Bucket="healthz", Key="readyz")["Body"].read() == b"object"
    assert get_json(emulator.endpoint_url, "/healthz") == (200, {"status": "alive"})  # unsigned: the probe


@sqlite_file_only
def test_readyz_names_a_database_whose_schema_is_behind(tmp_path: Path) -> None:
    with LocalEmulator(data_dir=tmp_path) as server:
        with sqlite3.connect(server.settings.db_path) as db:
            db.execute("DROP TABLE tags")
        status, body = get_json(server.endpoint_url, "/readyz")
        assert (status, body["checks"]) == (503, {"database": "pass", "schema": "fail", "s3": "pass"})
        assert get_json(server.endpoint_url, "/healthz")[0] == 200  # alive all the same


def test_readyz_names_an_external_s3_store_that_went_down(monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_server(monkeypatch) as (store_url, moto):
        with LocalEmulator(s3_endpoint_url=store_url) as server:
            assert get_json(server.endpoint_url, "/readyz") == (
                200, {"status": "ready", "checks": {"database": "pass", "schema": "pass", "s3": "pass"}})
            moto.terminate()
            moto.wait(30)
            status, _, body = raw_request(server.endpoint_url, "GET", "/readyz")
            assert (status, json.loads(body)) == (
                503, {"status": "not ready", "checks": {"database": "pass", "schema": "pass", "s3": "fail"}})
            assert store_url.rsplit(":", 1)[1].encode() not in body  # the reason is the operator's, in the log
            assert get_json(server.endpoint_url, "/healthz")[0] == 200


# -------------------------------------------------------------------------------------- metrics
def test_request_metrics_count_operations_statuses_and_s3(emulator: LocalEmulator, lookout: Any, s3: Any,
                                                          project_name: str, buckets: None) -> None:
    before = scrape(emulator.endpoint_url)
    lookout.list_projects()
    with pytest.raises(ClientError):
        lookout.describe_project(ProjectName=project_name)  # no such project: 404
    s3.put_object(Bucket=BUCKET, Key="metrics-test", Body=b"x")
    after = scrape(emulator.endpoint_url)

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("lookout_api_requests_total", operation="ListProjects", status="200") == 1
    assert moved("lookout_api_requests_total", operation="DescribeProject", status="404") == 1
    assert moved("lookout_api_request_duration_seconds_count", operation="ListProjects") == 1
    assert moved("lookout_api_request_duration_seconds_bucket", operation="ListProjects", le="+Inf") == 1
    assert moved("lookout_s3_requests_total", method="PUT", status="200") >= 1
    assert ("lookout_hosted_models", ()) in after and ("lookout_jobs_queued", ()) in after
    assert ("lookout_trainings_running", ()) in after


def test_job_metrics_and_log_lines_follow_a_dataset_import(emulator: LocalEmulator, kit: DatasetKit,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    before = scrape(emulator.endpoint_url)
    with caplog.at_level(logging.INFO, logger="emulator.jobs"):
        kit.create("train", [labelled(ref, "normal") for ref in kit.images(2)])
        assert kit.wait("train")["Status"] == "CREATE_COMPLETE"
        emulator.backend.jobs.wait_idle(timeout=30)
    after = scrape(emulator.endpoint_url)
    assert sample(after, "lookout_jobs_started_total", kind="dataset") - sample(
        before, "lookout_jobs_started_total", kind="dataset") >= 1
    assert sample(after, "lookout_jobs_finished_total", kind="dataset", outcome="succeeded") - sample(
        before, "lookout_jobs_finished_total", kind="dataset", outcome="succeeded") >= 1
    subject = f"subject={kit.project}/train"
    lines = [record.getMessage() for record in caplog.records if subject in record.getMessage()]
    assert lines[0].startswith(f"job event=started kind=dataset {subject} waited_s=")
    assert lines[1].startswith(f"job event=finished kind=dataset {subject} outcome=succeeded duration_s=")
    assert len(lines) == 2


@sqlite_file_only
def test_a_restart_logs_the_jobs_it_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A dataset job the server stopped under is resumed at the next start, and says so."""
    with LocalEmulator(data_dir=tmp_path) as server:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="resume")
        lookout = server.client("lookoutvision")
        lookout.create_project(ProjectName="resumed")
        with sqlite3.connect(server.settings.db_path) as db:  # a job a kill -9 interrupted
            db.execute("INSERT INTO datasets(project, dataset_type, status, status_message, created_at, updated_at,"
                       " manifest) VALUES ('resumed', 'train', 'CREATE_IN_PROGRESS', '', 0, 0, ?)",
                       (json.dumps({"Bucket": "resume", "Key": "missing.manifest"}),))
    with caplog.at_level(logging.INFO, logger="emulator.jobs"), LocalEmulator(data_dir=tmp_path) as server:
        server.backend.jobs.wait_idle(timeout=30)
        messages = [record.getMessage() for record in caplog.records if "subject=resumed/train" in record.getMessage()]
        assert messages[0] == "job event=resumed kind=dataset subject=resumed/train"
        assert messages[-1].startswith("job event=finished kind=dataset subject=resumed/train outcome=failed ")


# ------------------------------------------------------------------------------- access control
@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with a credentials file and a metrics token file."""
    folder = tmp_path_factory.mktemp("ops-access")
    (folder / "credentials").write_text(CREDENTIALS)
    (folder / "credentials").chmod(0o600)
    (folder / "metrics-token").write_text(METRICS_TOKEN + "\n")
    with LocalEmulator(credentials_file=folder / "credentials", metrics_token_file=folder / "metrics-token") as server:
        yield server


def test_with_credentials_the_probes_answer_unsigned_and_the_api_still_refuses(guarded: LocalEmulator) -> None:
    assert get_json(guarded.endpoint_url, "/healthz")[0] == 200
    assert get_json(guarded.endpoint_url, "/readyz")[0] == 200
    status, headers, _ = raw_request(guarded.endpoint_url, "GET", "/2020-11-20/projects")
    assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
    with pytest.raises(ClientError) as refused:
        boto3.client("s3", endpoint_url=guarded.endpoint_url, region_name="us-east-1",
                     config=Config(signature_version=UNSIGNED)).list_objects_v2(Bucket="any-bucket")
    assert refused.value.response["Error"]["Code"] == "AccessDenied"


def test_with_credentials_metrics_need_a_signature_or_the_bearer_token(guarded: LocalEmulator) -> None:
    status, headers, _ = raw_request(guarded.endpoint_url, "GET", "/metrics")
    assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
    status, headers, body = raw_request(guarded.endpoint_url, "GET", "/metrics",
                                        headers={"Authorization": "Bearer not-the-token-at-all"})
    assert (status, headers["x-amzn-errortype"]) == (403, "AccessDeniedException")
    assert b"metrics-token-file" in body
    assert signed_get(guarded.endpoint_url, "/metrics", ("AKIDUNKNOWN", "secret"))[0] == 403
    for key in (FULL, READ_ONLY):
        status, body = signed_get(guarded.endpoint_url, "/metrics", key)
        assert status == 200 and b"lookout_jobs_queued" in body
    assert raw_request(guarded.endpoint_url, "GET", "/2020-11-20/projects")[0] == 403
    samples = scrape(guarded.endpoint_url, Authorization=f"Bearer {METRICS_TOKEN}")
    assert sample(samples, "lookout_refused_requests_total", front_end="metrics", reason="missing") >= 1
    assert sample(samples, "lookout_refused_requests_total", front_end="api", reason="missing") >= 1
    make_client(guarded, "lookoutvision", FULL).list_projects()  # the keys still work for the API


def test_a_metrics_token_alone_guards_only_the_metrics(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(METRICS_TOKEN)
    with LocalEmulator(data_dir=tmp_path / "data", metrics_token_file=tmp_path / "token") as server:
        status, headers, _ = raw_request(server.endpoint_url, "GET", "/metrics")
        assert (status, headers["x-amzn-errortype"]) == (403, "MissingAuthenticationTokenException")
        assert "lookout_jobs_queued" in {name for name, _ in scrape(server.endpoint_url,
                                                                     Authorization=f"Bearer {METRICS_TOKEN}")}
        server.client("lookoutvision").list_projects()  # the server itself stays open


def test_a_bad_metrics_token_file_stops_the_server_before_it_starts(tmp_path: Path) -> None:
    from emulator.ops.endpoints import MetricsTokenError

    (tmp_path / "token").write_text("short")
    with pytest.raises(MetricsTokenError, match="at least 16"):
        LocalEmulator(data_dir=tmp_path / "data", metrics_token_file=tmp_path / "token").__enter__()
    with pytest.raises(MetricsTokenError, match="cannot read"):
        LocalEmulator(data_dir=tmp_path / "data", metrics_token_file=tmp_path / "absent").__enter__()
