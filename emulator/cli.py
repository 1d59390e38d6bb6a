"""``lookout-emulator`` command line: ``serve`` runs the API (and embedded S3) with waitress."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from emulator.config import DEFAULT_ACCOUNT_ID, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_REGION, Settings


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
    serve.add_argument("--threads", type=int, default=8, help="HTTP worker threads (default 8)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(data_dir=args.data_dir, host=args.host, port=args.port, region=args.region,
                        account_id=args.account_id, s3_endpoint_url=args.s3_endpoint_url)
    serve(settings, threads=args.threads)


def serve(settings: Settings, threads: int = 8) -> None:
    import waitress

    from emulator.app import create_app

    app, backend = create_app(settings)
    server = waitress.create_server(app, host=settings.host, port=settings.port, threads=threads)
    # Printed (not logged) so that scripts and the test fixture can read the bound port.
    print(f"lookout-emulator listening on http://{settings.host}:{server.effective_port}", flush=True)
    try:
        server.run()
    finally:
        backend.close()


if __name__ == "__main__":
    main()
