"""Run-time settings of one emulator instance.

Everything a server needs to know is collected here so that the CLI, the pytest fixture and the
Docker entrypoint build the same object and nothing reads the environment behind their back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from emulator.jobs import JOB_KINDS
from emulator.security.proxies import IPNetwork
from engine.options import DEFAULT_BACKBONE, FitOptions

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5010
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"
# The server trains and predicts on a GPU when torch sees one (engine.options.DEVICES lists the choices).
DEFAULT_DEVICE = "auto"
# The training budget: epochs of backbone fine-tuning per fold network (0 turns fine-tuning off).
DEFAULT_FINETUNE_EPOCHS = FitOptions.finetune_epochs
# Repetitions of the fine-tuning's cross-validation (each trains and runs another set of fold networks).
DEFAULT_FINETUNE_REPEATS = FitOptions.finetune_repeats
# The seed of every random choice a training makes (folds, subsamples, network initialisation): one
# dataset trained with one seed gives one model. The engine derives further seeds from it (seed + 1,
# seed + fold, seed + 1000 x repetition) and hands them to scikit-learn, which takes at most
# 2**32 - 1: this bound leaves room.
DEFAULT_ENGINE_SEED = FitOptions.seed
MAX_ENGINE_SEED = 2**31 - 1
# How long failed console sign-ins count, and how long a key id or address that failed too often waits.
DEFAULT_SIGNIN_LOCKOUT_SECONDS = 15 * 60.0
# The longest job-queue heartbeat: a dead node's jobs are taken over within about four heartbeats
# (three missed, then the next look for stalled jobs), which this keeps within a minute.
MAX_JOB_HEARTBEAT_SECONDS = 15.0
# What a server does (serve --role): API operations but DetectAnomalies, the console and the embedded
# S3 front end; hosting models and answering DetectAnomalies; running queued jobs. Default: all three.
API, INFERENCE, WORKER = "api", "inference", "worker"
ROLES = (API, INFERENCE, WORKER)


@dataclass(frozen=True)
class Settings:
    """Configuration of one server. `data_dir` holds the SQLite metadata and model artifacts."""

    data_dir: Path = field(default_factory=lambda: Path("./lookout-data"))
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    # None: serve an embedded S3 on the same port; otherwise read/write that external store.
    s3_endpoint_url: str | None = None
    # None: the embedded SQLite database in the data dir; otherwise the metadata database at this
    # SQLAlchemy URL (postgresql+psycopg://user:password@host:5432/name), which `db upgrade` migrates.
    database_url: str | None = None
    # Worker threads that run long jobs (dataset import, training, packaging).
    job_workers: int = 2
    # On PostgreSQL (emulator.jobqueue): trainings this node runs at once (the other jobs share
    # job_workers), and how often its queue worker writes a heartbeat; a job whose worker missed three
    # is taken over by another node.
    max_trainings: int = 1
    job_heartbeat_seconds: float = 10.0  # also the hosting heartbeat of emulator.services.hosting
    # What this server does (ROLES); anything but all three needs a PostgreSQL database_url shared
    # with the servers that do the rest.
    roles: tuple[str, ...] = ROLES
    # The job kinds (emulator.jobs.JOB_KINDS) this node's queue worker takes; only PostgreSQL nodes take
    # fewer than all, since with SQLite no other node would run the rest.
    job_kinds: tuple[str, ...] = JOB_KINDS
    # Feature extractor for new models. torchvision backbones read their weights from the file in
    # LOOKOUT_BACKBONE_WEIGHTS (e.g. baked into the Docker image); nothing is downloaded.
    backbone: str = DEFAULT_BACKBONE
    # Host names the server answers to besides the loopback ones (see emulator.security.crosssite); "*": any.
    allowed_hosts: tuple[str, ...] = ()
    # Networks of the load balancers in front of the server: only a peer in one of them may name the
    # client in X-Forwarded-For (emulator.security.proxies). Empty: the peer is the client.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # An AWS shared-credentials file: when given, every API and S3 request must be signed (SigV4)
    # with one of its keys and the console asks to sign in. None: open to anyone who reaches the port.
    credentials_file: Path | None = None
    # PEM certificate chain and private key: serve HTTPS instead of HTTP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A file holding the bearer token Prometheus sends to read /metrics (see emulator.ops.endpoints).
    metrics_token_file: Path | None = None
    # Where the engine trains and predicts: auto (CUDA when torch sees a GPU), cpu or cuda.
    device: str = DEFAULT_DEVICE
    # Epochs of backbone fine-tuning when a dataset has enough labelled anomalies: more can catch
    # subtler defects, at a training time that grows about linearly with it.
    finetune_epochs: int = DEFAULT_FINETUNE_EPOCHS
    # More than one: steadier verdicts from one training to the next (a seed ensemble), at that many
    # times the fine-tuning's training time and its networks' share of each prediction.
    finetune_repeats: int = DEFAULT_FINETUNE_REPEATS
    # The seed new models train with: another one shows how much a result owes to chance (benchmarks
    # train the same data with several).
    engine_seed: int = DEFAULT_ENGINE_SEED
    # Console sign-in: failures within this many seconds count together, and a key id or client address
    # with too many (emulator.security.throttle) waits as long before it may try again.
    signin_lockout_seconds: float = DEFAULT_SIGNIN_LOCKOUT_SECONDS

    @property
    def db_path(self) -> Path:
        return self.data_dir / "metadata.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def s3_dir(self) -> Path:
        """Where the embedded S3 mirrors its buckets so that they survive a restart."""
        return self.data_dir / "s3"
