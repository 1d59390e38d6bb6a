"""lookout-emulator command line: serve runs the Lookout for Vision API, an embedded S3 and the web
console on one port (waitress); db upgrade migrates a metadata database to this release's schema;
edge-agent serves packaged models over the Lookout for Vision Edge
Agent's gRPC API on a device (it imports neither the web stack nor, until a model starts, torch).

Every setting is a flag or a LOOKOUT_* environment variable (the flag wins). Bad input of either kind
ends with one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import errno
import ipaddress
import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from emulator.config import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_DEVICE,
    DEFAULT_ENGINE_SEED,
    DEFAULT_FINETUNE_EPOCHS,
    DEFAULT_FINETUNE_REPEATS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REGION,
    MAX_ENGINE_SEED,
    MAX_JOB_HEARTBEAT_SECONDS,
    ROLES,
    Settings,
)
from emulator.edge import DEFAULT_QUEUE_SIZE, DEFAULT_SOCKET
from emulator.jobs import JOB_KINDS
from emulator.security.proxies import IPNetwork
from engine.options import BACKBONES, DEFAULT_BACKBONE, DEVICES, MAX_FINETUNE_EPOCHS, MAX_FINETUNE_REPEATS

PROG = "lookout-emulator"
DEFAULT_THREADS = 8
MAX_THREADS = 256
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_ACCOUNT_ID = re.compile(r"\d{12}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # one DNS label
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


def version() -> str:
    """The installed distribution's version (the source tree's pyproject.toml when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(PROG)
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.exists() else None
        return found.group(1) if found else "unknown"


# ------------------------------------------------------------------------------------------ checks
# Each turns the text of a flag or variable into its value, or raises ArgumentTypeError saying why not.
def _port(text: str) -> int:
    try:
        port = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def _whole_number(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _whole_number_in(text: str, low: int, high: int) -> int:
    number = _whole_number(text)
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"must be {low} to {high}, not {number}")
    return number


def _threads(text: str) -> int:
    return _whole_number_in(text, 1, MAX_THREADS)


def _host(text: str) -> str:
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(candidate)
        return candidate
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(candidate):
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or host name")
    return candidate


def _listen_host(text: str) -> str:
    """A host to listen on: besides its spelling, it must resolve, which is checked here so that a
    typo is refused before the data directory is opened (waitress would fail only after that)."""
    host = _host(text)
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: a label the IDNA codec refuses
        raise argparse.ArgumentTypeError(f"{text!r} can't be resolved to an address to listen on "
                                         f"({getattr(exc, 'strerror', None) or exc})") from None
    return host


def _data_dir(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a directory")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    existing = next((p for p in (path, *path.absolute().parents) if p.exists()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{existing} is not writable by this user")
    return path


def _endpoint_url(text: str) -> str:
    parts = urlsplit(text)
    try:
        port_ok = parts.port is None or 0 < parts.port
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL with a host")
    return text


def _database_url(text: str) -> str:
    from emulator.store import StoreError
    from emulator.store.database import parse_url

    try:
        parse_url(text)
    except StoreError as bad:
        raise argparse.ArgumentTypeError(str(bad)) from None
    return text


def _is_postgresql(url: str | None) -> bool:
    from emulator.store.database import parse_url

    return url is not None and parse_url(url).get_backend_name() == "postgresql"


def _region(text: str) -> str:
    if not _REGION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a region name like us-east-1")
    return text


def _account_id(text: str) -> str:
    if not _ACCOUNT_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a 12-digit account id")
    return text


def _allowed_host(text: str) -> str:
    name = text.strip()
    if name == "*":
        return name
    try:
        _host(name[1:] if name.startswith(".") else name)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name, .domain or *") from None
    return name


def _trusted_proxy(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError:
        pass
    try:  # a typo more likely than a wish to trust the whole network: name it, do not guess
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a network (CIDR such as 10.0.0.0/8 or 2001:db8::/64) "
                                         "or an IP address") from None
    raise argparse.ArgumentTypeError(f"{text!r} has host bits set: the network is {network}")


def _path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a file")
    return Path(text).expanduser()


def _positive(text: str) -> int:
    number = _whole_number(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _batch(text: str) -> int:
    from emulator.inference import MAX_BATCH

    batch = _positive(text)
    if batch > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_BATCH}, not {batch}")
    return batch


def _components_dir(text: str) -> Path:
    path = _path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a directory")
    return path


def _socket_path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a file")
    return text


def _component(text: str) -> str:
    if not text.strip() or "/" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a component name")
    return text


def _listen(text: str) -> str:
    host, _, port = text.rpartition(":")
    try:
        _host(host)
        _port(port)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT with a port from 0 to 65535") from None
    return text


def _device(text: str) -> str:
    if text not in DEVICES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(DEVICES)}")
    return text


def _finetune_epochs(text: str) -> int:
    return _whole_number_in(text, 0, MAX_FINETUNE_EPOCHS)


def _finetune_repeats(text: str) -> int:
    return _whole_number_in(text, 1, MAX_FINETUNE_REPEATS)


def _engine_seed(text: str) -> int:
    return _whole_number_in(text, 0, MAX_ENGINE_SEED)


def _job_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(kind.strip() for kind in text.split(",") if kind.strip()))
    unknown = [kind for kind in kinds if kind not in JOB_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or repr(text)} is not a job kind; the kinds are "
                                         f"{', '.join(JOB_KINDS)}")
    return kinds


def _heartbeat(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= seconds <= MAX_JOB_HEARTBEAT_SECONDS:
        raise argparse.ArgumentTypeError(f"must be 0.1 to {MAX_JOB_HEARTBEAT_SECONDS:g} seconds, not {text}")
    return seconds


def _roles(text: str) -> tuple[str, ...]:
    named = [word.strip() for word in text.split(",") if word.strip()]
    if not named:
        raise argparse.ArgumentTypeError(f"names no role; use a comma-separated subset of {','.join(ROLES)}")
    unknown = [word for word in named if word not in ROLES]
    if unknown:
        raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not a role; use a comma-separated subset of "
                                         f"{','.join(ROLES)}")
    return tuple(role for role in ROLES if role in named)


def _backbone(text: str) -> str:
    if text not in BACKBONES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(BACKBONES)}")
    return text


@dataclass(frozen=True)
class Option:
    """One setting of a command: its flag, its environment variable, its default and its check."""

    flag: str
    env: str | None
    default: Any
    check: Callable[[str], Any]
    help: str
    metavar: str
    shown_default: str | None = None  # how help names the default, when not just its value
    repeatable: bool = False  # a list: the flag may be given again, the variable is comma-separated


DATA_DIR = Option("--data-dir", "LOOKOUT_DATA_DIR", Path("./lookout-data"), _data_dir,
                  "where metadata, model artifacts and embedded S3 objects are kept", "DIR")
DATABASE_URL = Option("--database-url", "LOOKOUT_DATABASE_URL", None, _database_url,
                      "keep the metadata in this database instead of <data-dir>/metadata.sqlite3: a SQLAlchemy URL "
                      "such as postgresql+psycopg://user:password@host:5432/lookout (PostgreSQL 15+; apply "
                      "migrations first with db upgrade)", "URL", "SQLite in the data dir")

SERVE_OPTIONS = (
    Option("--host", "LOOKOUT_HOST", DEFAULT_HOST, _listen_host, "interface to listen on (0.0.0.0 exposes the "
           "emulator to your network: use it only when you mean it)", "HOST"),
    Option("--port", "LOOKOUT_PORT", DEFAULT_PORT, _port, "TCP port, 0 to 65535 (0 picks a free one)", "PORT"),
    DATA_DIR,
    DATABASE_URL,
    Option("--s3-endpoint-url", "LOOKOUT_S3_ENDPOINT_URL", None, _endpoint_url,
           "use this external S3-compatible store instead of the embedded S3", "URL", "the embedded S3"),
    Option("--region", "LOOKOUT_REGION", DEFAULT_REGION, _region, "region in ARNs", "REGION"),
    Option("--account-id", "LOOKOUT_ACCOUNT_ID", DEFAULT_ACCOUNT_ID, _account_id, "12-digit account id in ARNs",
           "ID"),
    Option("--backbone", "LOOKOUT_BACKBONE", DEFAULT_BACKBONE, _backbone,
           f"feature extractor for new models: {', '.join(BACKBONES)}; all but {DEFAULT_BACKBONE} need "
           "ImageNet weights in the file named by LOOKOUT_BACKBONE_WEIGHTS", "NAME"),
    Option("--allowed-host", "LOOKOUT_ALLOWED_HOSTS", (), _allowed_host,
           "another host name clients use to reach the server, besides localhost, *.localhost, 127.0.0.1 and "
           "::1 (repeatable; .example.com also allows its subdomains, * any name); requests with other Host "
           "headers, and cross-site browser requests, are refused", "NAME", "loopback names only", repeatable=True),
    Option("--trusted-proxy", "LOOKOUT_TRUSTED_PROXIES", (), _trusted_proxy,
           "network (CIDR) of a load balancer in front of the server (repeatable): a request from it is taken to "
           "come from the right-most address of its X-Forwarded-For not in such a network, for sign-in lockouts "
           "and logs", "CIDR", "none: the connection's peer is the client", repeatable=True),
    Option("--device", "LOOKOUT_DEVICE", DEFAULT_DEVICE, _device,
           f"where models train and predict: {', '.join(DEVICES)} (auto: CUDA when torch sees a GPU, else the "
           "CPU); a model trained on one runs on the other", "DEVICE"),
    Option("--finetune-epochs", "LOOKOUT_FINETUNE_EPOCHS", DEFAULT_FINETUNE_EPOCHS, _finetune_epochs,
           f"training budget: epochs of backbone fine-tuning per network when a dataset has enough labelled "
           f"anomalies, 0 to {MAX_FINETUNE_EPOCHS} (training time grows about linearly; 0 turns it off)", "N"),
    Option("--finetune-repeats", "LOOKOUT_FINETUNE_REPEATS", DEFAULT_FINETUNE_REPEATS, _finetune_repeats,
           f"repetitions of the fine-tuning's cross-validation, 1 to {MAX_FINETUNE_REPEATS}: more give steadier "
           "verdicts from one training to the next, each at the cost of another set of networks to train and to "
           "run per prediction", "N"),
    Option("--engine-seed", "LOOKOUT_ENGINE_SEED", DEFAULT_ENGINE_SEED, _engine_seed,
           f"seed of new models' trainings, 0 to {MAX_ENGINE_SEED}: the same data and seed give the same model; "
           "another seed shows how much a result owes to chance", "N"),
    Option("--max-trainings", "LOOKOUT_MAX_TRAININGS", Settings.max_trainings, _positive,
           "with a PostgreSQL --database-url: models this node trains at once (other jobs run beside them)",
           "N"),
    Option("--job-heartbeat", "LOOKOUT_JOB_HEARTBEAT", Settings.job_heartbeat_seconds, _heartbeat,
           "seconds between this node's heartbeats, for its jobs (with a PostgreSQL --database-url) and the models "
           "it hosts; another node takes over the jobs of a node silent for three of them", "SECONDS"),
    Option("--role", "LOOKOUT_ROLE", ROLES, _roles,
           "what this node does, a comma-separated subset of: api (every API operation but DetectAnomalies, the "
           "console, the embedded S3), inference (hosts the started models, answers DetectAnomalies), worker "
           "(runs queued jobs); anything but all three needs a PostgreSQL --database-url", "ROLES",
           ",".join(ROLES)),
    Option("--job-kinds", "LOOKOUT_JOB_KINDS", JOB_KINDS, _job_kinds,
           f"with a PostgreSQL --database-url: the kinds of jobs this node runs, comma-separated from "
           f"{', '.join(JOB_KINDS)} (e.g. a GPU node: train; other nodes: dataset,package)", "KINDS",
           "all of them"),
    Option("--threads", "LOOKOUT_THREADS", DEFAULT_THREADS, _threads, f"HTTP worker threads, 1 to {MAX_THREADS}",
           "N"),
    Option("--credentials-file", "LOOKOUT_CREDENTIALS_FILE", None, _path,
           "AWS shared-credentials file (~/.aws/credentials format) whose keys may call: every API and S3 request "
           "must then be signed with one of them, and the console asks to sign in", "FILE",
           "none: open to anyone who reaches the port"),
    Option("--tls-cert", "LOOKOUT_TLS_CERT", None, _path, "PEM certificate (chain) to serve HTTPS; needs --tls-key",
           "FILE", "plain HTTP"),
    Option("--tls-key", "LOOKOUT_TLS_KEY", None, _path, "PEM private key of --tls-cert", "FILE", "none"),
    Option("--metrics-token-file", "LOOKOUT_METRICS_TOKEN_FILE", None, _path,
           "file holding a bearer token (16+ characters) that lets Prometheus read /metrics unsigned; without it, "
           "a server with --credentials-file serves /metrics only to signed requests", "FILE", "none"),
)

EDGE_AGENT_OPTIONS = (
    Option("--components-dir", "LOOKOUT_COMPONENTS_DIR", None, _components_dir,
           "folder of model components (required): each <ComponentName>/ folder as a packaging job wrote it under "
           "its S3OutputLocation; the highest version folder inside is served", "DIR", "none"),
    Option("--socket", "LOOKOUT_EDGE_SOCKET", DEFAULT_SOCKET, _socket_path,
           "Unix socket to serve on (AWS's edge clients connect to the default)", "PATH"),
    Option("--listen", "LOOKOUT_EDGE_LISTEN", None, _listen,
           "also serve on TCP, e.g. 127.0.0.1:50051 (no authentication: a trusted network only)", "HOST:PORT",
           "the socket only"),
    Option("--device", "LOOKOUT_DEVICE", "cpu", _device,
           f"where models run: {', '.join(DEVICES)} (auto: CUDA when torch sees a GPU)", "DEVICE"),
    Option("--queue-size", "LOOKOUT_EDGE_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, _positive,
           "DetectAnomalies requests that may wait for each running model; more are refused with "
           "RESOURCE_EXHAUSTED", "N"),
    Option("--batch", "LOOKOUT_EDGE_BATCH", 1, _batch,
           "waiting requests a model predicts together, up to 4 (more than 1 helps on a GPU)", "N"),
    Option("--max-running", "LOOKOUT_EDGE_MAX_RUNNING", None, _positive,
           "models that may run at once; StartModel beyond it is refused with RESOURCE_EXHAUSTED", "N", "no limit"),
    Option("--start", "LOOKOUT_EDGE_START", (), _component,
           "start this model component with the agent (repeatable)", "COMPONENT", "none", repeatable=True),
)
DB_OPTIONS = (DATABASE_URL, DATA_DIR)
COMMAND_OPTIONS = {"serve": SERVE_OPTIONS, "edge-agent": EDGE_AGENT_OPTIONS, "db": DB_OPTIONS}


class _Parser(argparse.ArgumentParser):
    """argparse, but a refused flag is one line on stderr (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__.strip(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    # Not required=True: argparse would then answer "--verison" with "COMMAND is required" instead of naming
    # the option it does not know; parse_args checks both, unknown options first.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = sub.add_parser("serve", help="serve the Lookout for Vision API, S3 and the web console on one port",
                           description="Serve the Lookout for Vision API, an embedded S3 and the web console "
                                       "(at /console/) on one port until Ctrl-C or SIGTERM.")
    _add_options(serve, SERVE_OPTIONS)
    agent = sub.add_parser("edge-agent", help="serve packaged models over the Lookout for Vision Edge Agent gRPC API",
                           description="Serve the model components of --components-dir over the Lookout for Vision "
                                       "Edge Agent's gRPC API until Ctrl-C or SIGTERM.")
    _add_options(agent, EDGE_AGENT_OPTIONS)
    database = sub.add_parser("db", help="manage the metadata database", description="Manage the metadata database.")
    actions = database.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    upgrade = actions.add_parser("upgrade", help="apply this release's schema migrations (once per deploy)",
                                 description="Apply this release's schema migrations to the metadata database: "
                                             "--database-url, else the SQLite database in --data-dir. Run it once "
                                             "per deploy, before the servers start; running it again changes nothing.")
    _add_options(upgrade, DB_OPTIONS)
    return parser


def _add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    for option in options:
        shown = option.shown_default or option.default
        env = f"; environment variable {option.env}" if option.env else ""
        env += ", comma-separated" if option.env and option.repeatable else ""
        parser.add_argument(option.flag, type=option.check, default=None, metavar=option.metavar,
                            action="append" if option.repeatable else "store", dest=_dest(option),
                            help=f"{option.help} (default {shown}{env})")


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The flags, with each one not given taken from its environment variable (checked the same
    way) or its default."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{_did_you_mean(parser, args.command, unknown)}")
    if args.command is None:
        parser.error("the following arguments are required: COMMAND")
    for option in COMMAND_OPTIONS[args.command]:
        name, given = _dest(option), getattr(args, _dest(option))
        value = os.environ.get(option.env) if option.env else None
        try:
            if option.repeatable:  # the variable's items, then the flags'
                from_env = [option.check(item) for item in (value or "").split(",") if item.strip()]
                setattr(args, name, (*from_env, *(given or ())) or option.default)
            elif given is None:
                setattr(args, name, option.default if value is None else option.check(value))
        except argparse.ArgumentTypeError as bad:
            parser.error(f"environment variable {option.env}: {bad}")
    return args


def _did_you_mean(parser: argparse.ArgumentParser, command: str | None, unknown: list[str]) -> str:
    """A suggestion for the first mistyped option (--verison: --version), from the top-level options
    and those of the command given (argparse 3.11 names an unknown option but suggests nothing)."""
    valid = [flag for action in parser._actions for flag in action.option_strings]  # --help, --version
    valid += [option.flag for option in COMMAND_OPTIONS.get(command or "", ())]
    typed = next((word.split("=", 1)[0] for word in unknown if word.startswith("--")), None)
    close = difflib.get_close_matches(typed, valid, n=1) if typed else []
    return f" (did you mean {close[0]}?)" if close else ""


def _dest(option: Option) -> str:
    """The attribute of the parsed arguments: --allowed-host gives allowed_hosts, --trusted-proxy
    trusted_proxies, --data-dir data_dir."""
    name = option.flag.lstrip("-").replace("-", "_")
    if not option.repeatable:
        return name
    return name[:-1] + "ies" if name.endswith("y") else name + "s"


def check_port_free(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, found before the data directory is opened
    (which may take seconds and belong to another server); None if it can. Port 0 always can."""
    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"the host {host} can't be resolved ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another lookout-emulator?); choose another "
                        "with --port or LOOKOUT_PORT")
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.command == "edge-agent":
        edge_agent(parser, args)
        return
    if args.command == "db":
        upgrade_database(parser, args)
        return
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if set(args.role) != set(ROLES) and not _is_postgresql(args.database_url):
        parser.error(f"--role {','.join(args.role)} needs a PostgreSQL --database-url shared with the nodes of the "
                     "other roles; the embedded SQLite database serves all roles in one process")
    if set(args.job_kinds) != set(JOB_KINDS) and not _is_postgresql(args.database_url):
        parser.error("--job-kinds needs a PostgreSQL --database-url: with the embedded SQLite database this server "
                     "is the only one, so it runs every kind of job")
    if set(args.job_kinds) != set(JOB_KINDS) and "worker" not in args.role:
        parser.error("--job-kinds names the jobs this node's worker runs; it needs the worker role (--role)")
    problem = check_port_free(args.host, args.port)
    if problem:
        parser.exit(1, f"{PROG}: {problem}\n")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port, region=args.region,
                        account_id=args.account_id, s3_endpoint_url=args.s3_endpoint_url,
                        backbone=args.backbone, allowed_hosts=args.allowed_hosts,
                        trusted_proxies=args.trusted_proxies,
                        credentials_file=args.credentials_file, tls_cert=args.tls_cert, tls_key=args.tls_key,
                        device=args.device, finetune_epochs=args.finetune_epochs,
                        finetune_repeats=args.finetune_repeats, engine_seed=args.engine_seed,
                        metrics_token_file=args.metrics_token_file, database_url=args.database_url,
                        max_trainings=args.max_trainings, job_heartbeat_seconds=args.job_heartbeat,
                        roles=args.role, job_kinds=args.job_kinds)
    from emulator.datadir import DataDirInUse
    from emulator.ops.endpoints import MetricsTokenError
    from emulator.security.access import CredentialsFileError
    from emulator.security.tls import TLSSetupError
    from emulator.store import SchemaBehind, StoreError

    try:
        serve(settings, threads=args.threads)
    except SchemaBehind as exc:
        parser.exit(2, f"{PROG}: {exc}\n")
    except (CredentialsFileError, MetricsTokenError, TLSSetupError) as exc:  # a flag's file, unusable
        parser.error(str(exc))
    except (DataDirInUse, StoreError) as exc:  # the flags are fine, the machine's state is not
        parser.exit(1, f"{PROG}: {exc}\n")
    except OSError as exc:  # e.g. the port was taken between the check and the bind
        parser.exit(1, f"{PROG}: cannot serve on {settings.host}:{settings.port}: {exc}\n")


def upgrade_database(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``db upgrade``: migrate the database and say from which revision to which."""
    from emulator.store import Store, StoreError, sqlite_url
    from emulator.store.migrate import head

    url = args.database_url or sqlite_url(Settings(data_dir=args.data_dir).db_path)
    try:
        was = Store.upgrade(url)
    except StoreError as exc:
        parser.exit(1, f"{PROG}: {exc}\n")
    now = head()
    print(f"{PROG}: the metadata database is at revision {now}" + ("" if was == now else f" (was {was})"),
          flush=True)


def edge_agent(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Run the edge agent until SIGINT or SIGTERM."""
    if args.components_dir is None:
        parser.error("edge-agent needs --components-dir (or LOOKOUT_COMPONENTS_DIR)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from emulator.edge.agent import AgentError, AgentOptions
    from emulator.edge.agent import serve as serve_agent

    options = AgentOptions(components_dir=args.components_dir, device=args.device, queue_size=args.queue_size,
                           batch=args.batch, max_running=args.max_running)
    try:
        serve_agent(options, args.socket, args.listen, args.starts)
    except AgentError as exc:
        parser.exit(1, f"{PROG} edge-agent: {exc}\n")


def console_url(endpoint_url: str, host: str) -> str:
    """Where a browser on this machine finds the console (a wildcard address is not one to browse to)."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - recognising a wildcard address, not binding to one
        endpoint_url = re.sub(r"//(\[::\]|0\.0\.0\.0)", "//127.0.0.1", endpoint_url)
    return f"{endpoint_url}/console/"


def serve(settings: Settings, threads: int = DEFAULT_THREADS) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then shut down cleanly, within a deadline
    (emulator.process); the process's main loop."""
    from emulator.process import install_stop_signals, wait_then_stop
    from emulator.security.access import startup_notice
    from emulator.server import Server

    stopped = install_stop_signals()
    server = Server(settings, threads=threads).start()
    # Printed (not logged) so that scripts and tests can read the bound port; the console's address
    # follows on its own line for people.
    print(f"{PROG} listening on {server.endpoint_url}", flush=True)
    print(f"web console: {console_url(server.endpoint_url, settings.host)}", flush=True)
    notice, warning = startup_notice(settings.host, server.keys)
    print(notice, flush=True)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    wait_then_stop(stopped, server.stop, lambda: server.running)


if __name__ == "__main__":
    main(sys.argv[1:])
