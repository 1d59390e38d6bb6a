"""A data directory written by the releases before the store had migrations upgrades in place with
nothing lost: its metadata.sqlite3 (made here with those releases' DDL, copied below, and real rows)
has every table but no alembic_version; the new server stamps and upgrades it, and every resource is
there through boto3."""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from emulator.api.idempotency import fingerprint
from emulator.store import Store, sqlite_url
from emulator.store.migrate import current, head
from emulator.testing import LocalEmulator

# metadata.sqlite3's schema as emulator/store.py of those releases created it (verbatim).
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    name        TEXT PRIMARY KEY,
    arn         TEXT NOT NULL UNIQUE,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS client_tokens (
    operation   TEXT NOT NULL,
    token       TEXT NOT NULL,
    input_hash  TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (operation, token)
);
CREATE TABLE IF NOT EXISTS datasets (
    project        TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    dataset_type   TEXT NOT NULL,
    status         TEXT NOT NULL,
    status_message TEXT,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    manifest       TEXT,                  -- JSON S3Object the dataset was created from (NULL: empty)
    pending_changes TEXT,                 -- JSON [[line number, JSON line], ...] of a running update
    PRIMARY KEY (project, dataset_type)
);
CREATE TABLE IF NOT EXISTS dataset_entries (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    project       TEXT NOT NULL,
    dataset_type  TEXT NOT NULL,
    source_ref    TEXT NOT NULL,
    line          TEXT NOT NULL,          -- the JSON line as stored (ListDatasetEntries returns it)
    label         TEXT,                   -- 'normal' / 'anomaly' / NULL (unlabelled)
    width         INTEGER NOT NULL,       -- image dimensions: all images of a project must match
    height        INTEGER NOT NULL,
    created_at    REAL NOT NULL,
    UNIQUE (project, dataset_type, source_ref),
    FOREIGN KEY (project, dataset_type) REFERENCES datasets(project, dataset_type) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS models (
    project             TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    version             INTEGER NOT NULL,
    arn                 TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    status_message      TEXT,
    description         TEXT,
    kms_key_id          TEXT,
    output_bucket       TEXT NOT NULL,
    output_prefix       TEXT,
    created_at          REAL NOT NULL,
    performance         TEXT,             -- JSON {F1Score, Recall, Precision}
    evaluation_manifest TEXT,             -- JSON {Bucket, Key}
    evaluation_result   TEXT,             -- JSON {Bucket, Key}
    evaluation_end      REAL,
    min_inference_units INTEGER,
    max_inference_units INTEGER,
    PRIMARY KEY (project, version)
);
-- Last model version handed out per project: versions are never reused after a DeleteModel.
CREATE TABLE IF NOT EXISTS model_versions (
    project      TEXT PRIMARY KEY REFERENCES projects(name) ON DELETE CASCADE,
    last_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS packaging_jobs (
    project        TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    job_name       TEXT NOT NULL,
    model_version  INTEGER NOT NULL,
    status         TEXT NOT NULL,
    status_message TEXT,
    description    TEXT,
    configuration  TEXT NOT NULL,         -- JSON ModelPackagingConfiguration as given
    output_details TEXT,                  -- JSON ModelPackagingOutputDetails
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    PRIMARY KEY (project, job_name)
);
CREATE TABLE IF NOT EXISTS tags (
    resource_arn TEXT NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (resource_arn, key)
);
CREATE TABLE IF NOT EXISTS console_settings (  -- web console state that is not an API resource
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trial_detections (  -- web console trial detection tasks, kept until the project goes
    project        TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    model_version  INTEGER NOT NULL,
    source         TEXT NOT NULL,         -- 'upload' or the s3:// prefix the images came from
    status         TEXT NOT NULL,         -- IN_PROGRESS / COMPLETED / FAILED
    status_message TEXT,
    created_at     REAL NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE IF NOT EXISTS trial_images (
    project      TEXT NOT NULL,
    trial        TEXT NOT NULL,
    source_ref   TEXT NOT NULL,           -- s3:// URI of the image
    is_anomalous INTEGER,                 -- the prediction (NULL until detected)
    confidence   REAL,
    mask_ref     TEXT,                    -- s3:// URI of the predicted anomaly mask (segmentation models)
    heatmap_ref  TEXT,                    -- s3:// URI of the anomaly map as a greyscale PNG (every model)
    anomalies    TEXT,                    -- JSON Anomalies of a segmentation prediction
    error        TEXT,                    -- why detection failed on this image
    verified     TEXT,                    -- label the user confirmed: 'normal' / 'anomaly' / NULL
    added        INTEGER NOT NULL DEFAULT 0,  -- 1 once copied into the training dataset
    PRIMARY KEY (project, trial, source_ref),
    FOREIGN KEY (project, trial) REFERENCES trial_detections(project, name) ON DELETE CASCADE
);
"""
# Releases before console heatmaps lacked this column (the next start added it with ALTER TABLE).
HEATMAP_COLUMN = re.compile(r"\n *heatmap_ref [^\n]*")
# The last release before migrations added this table.
CONSOLE_SESSIONS = """
CREATE TABLE IF NOT EXISTS console_sessions (  -- console sign-ins not signed out (emulator.console.signin)
    id          TEXT PRIMARY KEY,         -- the random id the signed session cookie carries
    key_id      TEXT NOT NULL,
    expires_at  REAL NOT NULL             -- seconds since the epoch, as the cookie's own expiry
);
"""
SCHEMAS = {"last-release": LEGACY_SCHEMA + CONSOLE_SESSIONS, "before-console-sessions": LEGACY_SCHEMA,
           "before-heatmaps": HEATMAP_COLUMN.sub("", LEGACY_SCHEMA)}
ARN = "arn:aws:lookoutvision:us-east-1:123456789012"
PERFORMANCE = {"F1Score": 0.9, "Recall": 1.0, "Precision": 0.8}
CONFIGURATION = {"Greengrass": {"ComponentName": "legacy-component", "TargetDevice": "jetson_xavier",
                                "S3OutputLocation": {"Bucket": "out"}}}
LINE = {"source-ref": "s3://legacy-bucket/a.png", "anomaly-label": 0,
        "anomaly-label-metadata": {"class-name": "normal", "human-annotated": "yes", "job-name": "labeling-job/x",
                                   "type": "groundtruth/image-classification", "creation-date": "2020-01-01T00:00:00"}}


def _legacy_data_dir(path: Path, release: str) -> None:
    path.mkdir(parents=True)
    with sqlite3.connect(path / "metadata.sqlite3") as db:
        db.executescript(SCHEMAS[release])
        db.execute("INSERT INTO projects VALUES ('legacy', ?, 1000.0)", (f"{ARN}:project/legacy",))
        db.execute("INSERT INTO datasets(project, dataset_type, status, status_message, created_at, updated_at)"
                   " VALUES ('legacy', 'train', 'CREATE_COMPLETE', 'Imported 1 images.', 1001.0, 1002.0)")
        db.execute("INSERT INTO dataset_entries(project, dataset_type, source_ref, line, label, width, height,"
                   " created_at) VALUES ('legacy', 'train', 's3://legacy-bucket/a.png', ?, 'normal', 64, 64, 1001.0)",
                   (json.dumps(LINE),))
        db.execute("INSERT INTO models(project, version, arn, status, status_message, output_bucket, created_at,"
                   " performance, evaluation_manifest, evaluation_end) VALUES ('legacy', 3, ?, 'TRAINED', 'Trained.',"
                   " 'out', 1003.0, ?, ?, 1004.0)", (f"{ARN}:model/legacy/3", json.dumps(PERFORMANCE),
                                                     json.dumps({"Bucket": "out", "Key": "m.json"})))
        db.execute("INSERT INTO model_versions VALUES ('legacy', 4)")  # version 4 was deleted
        db.execute("INSERT INTO packaging_jobs(project, job_name, model_version, status, status_message,"
                   " configuration, output_details, created_at, updated_at) VALUES ('legacy', 'job', 3, 'SUCCEEDED',"
                   " 'Packaged.', ?, ?, 1005.0, 1006.0)",
                   (json.dumps(CONFIGURATION), json.dumps({"Greengrass": {"ComponentName": "legacy-component"}})))
        db.execute("INSERT INTO tags VALUES (?, 'line', '7')", (f"{ARN}:model/legacy/3",))
        db.execute("INSERT INTO client_tokens VALUES ('CreateProject', 'token-1', ?, ?, 9e12)",
                   (fingerprint({"ProjectName": "replayed"}),
                    json.dumps({"ProjectMetadata": {"ProjectName": "replayed"}})))
        db.execute("INSERT INTO console_settings VALUES ('bucket', 'lookoutvision-us-east-1-legacy')")
        db.execute("INSERT INTO trial_detections VALUES ('legacy', 'trial', 3, 'upload', 'COMPLETED', 'Done.', 1007.0)")
        db.execute("INSERT INTO trial_images(project, trial, source_ref, is_anomalous, confidence, verified, added)"
                   " VALUES ('legacy', 'trial', 's3://b/t.png', 1, 0.75, 'anomaly', 1)")


@pytest.mark.parametrize("release", SCHEMAS)
def test_a_legacy_data_dir_upgrades_in_place_with_nothing_lost(tmp_path: Path, release: str) -> None:
    data = tmp_path / "data"
    _legacy_data_dir(data, release)
    url = sqlite_url(data / "metadata.sqlite3")
    with LocalEmulator(data_dir=data, database_url=url) as emulator:
        lookout = emulator.client()
        project = lookout.describe_project(ProjectName="legacy")["ProjectDescription"]
        assert (project["ProjectArn"], project["CreationTimestamp"].timestamp()) == (f"{ARN}:project/legacy", 1000.0)
        assert [d["DatasetType"] for d in project["Datasets"]] == ["train"]
        dataset = lookout.describe_dataset(ProjectName="legacy", DatasetType="train")["DatasetDescription"]
        assert dataset["ImageStats"] == {"Total": 1, "Labeled": 1, "Normal": 1, "Anomaly": 0}
        entries = lookout.list_dataset_entries(ProjectName="legacy", DatasetType="train")["DatasetEntries"]
        assert [json.loads(e) for e in entries] == [LINE]
        model = lookout.describe_model(ProjectName="legacy", ModelVersion="3")["ModelDescription"]
        assert (model["Status"], model["Performance"], model["EvaluationManifest"]) == (
            "TRAINED", PERFORMANCE, {"Bucket": "out", "Key": "m.json"})
        assert lookout.list_tags_for_resource(ResourceArn=model["ModelArn"])["Tags"] == [{"Key": "line", "Value": "7"}]
        job = lookout.describe_model_packaging_job(ProjectName="legacy", JobName="job")["ModelPackagingDescription"]
        assert (job["Status"], job["ModelPackagingConfiguration"]) == ("SUCCEEDED", CONFIGURATION)
        replayed = lookout.create_project(ProjectName="replayed", ClientToken="token-1")
        assert replayed["ProjectMetadata"] == {"ProjectName": "replayed"}  # the stored response, replayed
        store = emulator.backend.store
        assert store.console_settings.get("bucket") == "lookoutvision-us-east-1-legacy"
        [image] = store.trials.images("legacy", "trial")
        assert (image.is_anomalous, image.confidence, image.verified, image.added, image.heatmap_ref) == (
            True, 0.75, "anomaly", True, None)
        assert store.trials.get("legacy", "trial").status == "COMPLETED"
        assert store.models.next_version("legacy") == 5  # 4 stays used
        store.console_sessions.add("session", "key", expires_at=2e12, now=1e12)
        assert store.console_sessions.is_live("session", "key", now=1e12)
        assert store.schema_problem() is None and store.ping() is None
    upgraded = Store.open(url)
    with upgraded.database.connection() as conn:
        assert current(conn) == head()
    upgraded.close()
