"""``lookout-emulator`` command line: ``serve`` runs the API (and embedded S3) with waitress."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from emulator.config import (
    BACKBONES,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_BACKBONE,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REGION,
    Settings,
)

DEFAULT_THREADS = 8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookout-emulator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the Lookout for Vision API and S3 on one port")
    serve.add_argument("--host", default=os.environ.get("LOOKOUT_HOST", DEFAULT_HOST),
                       help=f"interface to listen on (default {DEFAULT_HOST}; use 0.0.0.0 only when you mean it)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("LOOKOUT_PORT", DEFAULT_PORT)),
                       help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--data-dir", type=Path, default=Path(os.environ.get("LOOKOUT_DATA_DIR", "./lookout-data")),
                       help="where metadata, model artifacts and embedded S3 objects are kept (default ./lookout-data)")
    serve.add_argument("--s3-endpoint-url", default=os.environ.get("LOOKOUT_S3_ENDPOINT_URL"),
                       help="use this external S3-compatible store instead of the embedded S3")
    serve.add_argument("--region", default=os.environ.get("LOOKOUT_REGION", DEFAULT_REGION),
                       help=f"region in ARNs (default {DEFAULT_REGION})")
    serve.add_argument("--account-id", default=os.environ.get("LOOKOUT_ACCOUNT_ID", DEFAULT_ACCOUNT_ID),
                       help=f"account id in ARNs (default {DEFAULT_ACCOUNT_ID})")
    serve.add_argument("--backbone", choices=BACKBONES, default=os.environ.get("LOOKOUT_BACKBONE", DEFAULT_BACKBONE),
                       help=f"feature extractor for new models (default {DEFAULT_BACKBONE}, shipped with the package;"
                            " the others need ImageNet weights in the file named by LOOKOUT_BACKBONE_WEIGHTS)")
    serve.add_argument("--allowed-host", action="append", dest="allowed_hosts",
                       default=[name for name in os.environ.get("LOOKOUT_ALLOWED_HOSTS", "").split(",")
                                if name.strip()],
                       help="a host name clients use to reach the server besides localhost, *.localhost, 127.0.0.1 "
                            "and ::1 (repeatable; '.example.com' also allows its subdomains, '*' any name; "
                            "env LOOKOUT_ALLOWED_HOSTS, comma-separated). Other Host headers and cross-site "
                            "browser requests are refused")
    serve.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                       help=f"HTTP worker threads (default {DEFAULT_THREADS})")
    serve.add_argument("--credentials-file", type=Path, default=_path_from_env("LOOKOUT_CREDENTIALS_FILE"),
                       help="AWS shared-credentials file (~/.aws/credentials format) whose keys may call: every API "
                            "and S3 request must then be signed with one of them, and the console asks to sign in "
                            "(default: open to anyone who reaches the port)")
    serve.add_argument("--tls-cert", type=Path, default=_path_from_env("LOOKOUT_TLS_CERT"),
                       help="PEM certificate (chain) to serve HTTPS; needs --tls-key")
    serve.add_argument("--tls-key", type=Path, default=_path_from_env("LOOKOUT_TLS_KEY"),
                       help="PEM private key of --tls-cert")
    return parser


def _path_from_env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port, region=args.region,
                        account_id=args.account_id, s3_endpoint_url=args.s3_endpoint_url,
                        backbone=args.backbone, allowed_hosts=tuple(args.allowed_hosts),
                        credentials_file=args.credentials_file,
                        tls_cert=args.tls_cert, tls_key=args.tls_key)
    from emulator.access import CredentialsFileError
    from emulator.tls import TLSSetupError

    try:
        serve(settings, threads=args.threads)
    except (CredentialsFileError, TLSSetupError) as exc:
        parser.exit(1, f"lookout-emulator: {exc}\n")
    except OSError as exc:  # typically the port is taken
        parser.exit(1, f"lookout-emulator: cannot serve on {settings.host}:{settings.port}: {exc}\n")


def serve(settings: Settings, threads: int = DEFAULT_THREADS) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then shut down cleanly."""
    from emulator.access import startup_notice
    from emulator.server import Server

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = Server(settings, threads=threads).start()
    # Printed (not logged) so that scripts and tests can read the bound port.
    print(f"lookout-emulator listening on {server.endpoint_url}", flush=True)
    notice, warning = startup_notice(settings.host, server.keys)
    print(notice, flush=True)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        while server.running and not stop.wait(0.5):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
