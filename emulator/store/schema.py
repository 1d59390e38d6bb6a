"""The metadata tables, as SQLAlchemy Core tables: the one definition the repositories query and
Alembic compares migrations with. Columns hold what the API reports; JSON text columns hold nested
data (the repositories encode and decode them). Times are seconds since the epoch.

Changing a table here needs a new migration in ``migrations/versions`` (revision 1 is the schema
of the releases before the store had migrations).
"""
from __future__ import annotations

from sqlalchemy import (
    Column,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

projects = Table(
    "projects", metadata,
    Column("name", Text, primary_key=True),
    Column("arn", Text, nullable=False, unique=True),
    Column("created_at", Double, nullable=False),
)

client_tokens = Table(  # ClientToken idempotency: the first response of each (operation, token)
    "client_tokens", metadata,
    Column("operation", Text, primary_key=True),
    Column("token", Text, primary_key=True),
    Column("input_hash", Text, nullable=False),
    Column("response", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

datasets = Table(
    "datasets", metadata,
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
    Column("dataset_type", Text, primary_key=True),
    Column("status", Text, nullable=False),
    Column("status_message", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("manifest", Text),  # JSON S3Object the dataset was created from (NULL: empty)
    Column("pending_changes", Text),  # JSON [[line number, JSON line], ...] of a running update
)

dataset_entries = Table(
    "dataset_entries", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # insertion order: ListDatasetEntries pages by it
    Column("project", Text, nullable=False),
    Column("dataset_type", Text, nullable=False),
    Column("source_ref", Text, nullable=False),
    Column("line", Text, nullable=False),  # the JSON line as stored (ListDatasetEntries returns it)
    Column("label", Text),  # 'normal' / 'anomaly' / NULL (unlabelled)
    Column("width", Integer, nullable=False),  # image dimensions: all images of a project must match
    Column("height", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("project", "dataset_type", "source_ref"),
    ForeignKeyConstraint(["project", "dataset_type"], ["datasets.project", "datasets.dataset_type"],
                         ondelete="CASCADE"),
    sqlite_autoincrement=True,  # a deleted entry's seq is never handed out again (page tokens stay valid)
)
# A project's picture (Entries.picture): the first source-ref of a label is one seek, however many entries.
Index("ix_dataset_entries_picture", dataset_entries.c.project, dataset_entries.c.label, dataset_entries.c.source_ref)

models = Table(
    "models", metadata,
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("arn", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False),
    Column("status_message", Text),
    Column("description", Text),
    Column("kms_key_id", Text),
    Column("output_bucket", Text, nullable=False),
    Column("output_prefix", Text),
    Column("created_at", Double, nullable=False),
    Column("performance", Text),  # JSON {F1Score, Recall, Precision}
    Column("evaluation_manifest", Text),  # JSON {Bucket, Key}
    Column("evaluation_result", Text),  # JSON {Bucket, Key}
    Column("evaluation_end", Double),
    Column("min_inference_units", Integer),
    Column("max_inference_units", Integer),
)

training_progress = Table(  # where a model's running training is, for every node's console and DescribeModel
    "training_progress", metadata,
    Column("project", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("started", Double, nullable=False),  # when this run of the training job began
    Column("stage", Text, nullable=False),  # the engine's step
    Column("fraction", Double, nullable=False),  # of the training done, 0 to 1
    ForeignKeyConstraint(["project", "version"], ["models.project", "models.version"], ondelete="CASCADE"),
)

model_versions = Table(  # last model version handed out per project: never reused after a DeleteModel
    "model_versions", metadata,
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
    Column("last_version", Integer, nullable=False),
)

packaging_jobs = Table(
    "packaging_jobs", metadata,
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
    Column("job_name", Text, primary_key=True),
    Column("model_version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("status_message", Text),
    Column("description", Text),
    Column("configuration", Text, nullable=False),  # JSON ModelPackagingConfiguration as given
    Column("output_details", Text),  # JSON ModelPackagingOutputDetails
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

tags = Table(
    "tags", metadata,
    Column("resource_arn", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

console_settings = Table(  # web console state that is not an API resource
    "console_settings", metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

console_sessions = Table(  # console sign-ins not signed out (emulator.console.signin)
    "console_sessions", metadata,
    Column("id", Text, primary_key=True),  # the random id the signed session cookie carries
    Column("key_id", Text, nullable=False),
    Column("expires_at", Double, nullable=False),  # seconds since the epoch, as the cookie's own expiry
)

# Failed console sign-ins (emulator.security.throttle), in the store so that a guesser spread over
# the nodes of a fleet by its balancer, or waiting out a restart, counts as one. Times are the
# database's clock; rows older than the lockout period are deleted by the next failure.
signin_failures = Table(  # one row per failed attempt, for each name it counts against
    "signin_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),  # "access key <id>" or "address <client address>"
    Column("failed_at", Double, nullable=False),
)
Index("ix_signin_failures_name", signin_failures.c.name, signin_failures.c.failed_at)
Index("ix_signin_failures_failed_at", signin_failures.c.failed_at)  # pruning

signin_lockouts = Table(  # names that may not try to sign in until a time
    "signin_lockouts", metadata,
    Column("name", Text, primary_key=True),
    Column("locked_until", Double, nullable=False),
)

trial_detections = Table(  # web console trial detection tasks, kept until the project goes
    "trial_detections", metadata,
    Column("project", Text, ForeignKey("projects.name", ondelete="CASCADE"), primary_key=True),
    Column("name", Text, primary_key=True),
    Column("model_version", Integer, nullable=False),
    Column("source", Text, nullable=False),  # 'upload' or the s3:// prefix the images came from
    Column("status", Text, nullable=False),  # IN_PROGRESS / COMPLETED / FAILED
    Column("status_message", Text),
    Column("created_at", Double, nullable=False),
)

trial_images = Table(
    "trial_images", metadata,
    Column("project", Text, primary_key=True),
    Column("trial", Text, primary_key=True),
    Column("source_ref", Text, primary_key=True),  # s3:// URI of the image
    Column("is_anomalous", Integer),  # the prediction, 0 or 1 (NULL until detected)
    Column("confidence", Double),
    Column("mask_ref", Text),  # s3:// URI of the predicted anomaly mask (segmentation models)
    Column("heatmap_ref", Text),  # s3:// URI of the anomaly map as a greyscale PNG (every model)
    Column("anomalies", Text),  # JSON Anomalies of a segmentation prediction
    Column("error", Text),  # why detection failed on this image
    Column("verified", Text),  # label the user confirmed: 'normal' / 'anomaly' / NULL
    Column("added", Integer, nullable=False, server_default=text("0")),  # 1 once copied into the training dataset
    ForeignKeyConstraint(["project", "trial"], ["trial_detections.project", "trial_detections.name"],
                         ondelete="CASCADE"),
)

trial_hostings = Table(  # models that trial detections started (emulator.console.trial_runs): the last
    # trial running on one, on whichever node, stops it; a model hosted any other way has no row here.
    "trial_hostings", metadata,
    Column("project", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    ForeignKeyConstraint(["project", "version"], ["models.project", "models.version"], ondelete="CASCADE"),
)

# Hosting across nodes (emulator.services.hosting): the models table's status says what should be
# hosted; these two say what each live server actually holds. Rows of a node whose heartbeat is older
# than three heartbeats are a dead node's and are ignored, then deleted by whichever node notices.
nodes = Table(  # every running server, from its start until it stops (or its heartbeat does)
    "nodes", metadata,
    Column("node_id", Text, primary_key=True),  # host name, process id and a random part: one per process start
    Column("roles", Text, nullable=False),  # comma-separated: api, inference, worker
    Column("started_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
    # How often it beats (its --job-heartbeat); the default only fills rows older than the column.
    Column("heartbeat_seconds", Double, nullable=False, server_default=text("10")),
)

model_hostings = Table(  # the models each node has loaded, is loading or failed to load
    "model_hostings", metadata,
    Column("node_id", Text, ForeignKey("nodes.node_id", ondelete="CASCADE"), primary_key=True),
    Column("project", Text, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("state", Text, nullable=False),  # loading / serving / failed
    Column("message", Text),  # why loading failed (paths relative to the data dir)
    Column("heartbeat_at", Double, nullable=False),
)
