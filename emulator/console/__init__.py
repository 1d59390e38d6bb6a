"""The web console at ``/console``: the Lookout for Vision console workflow in a browser.

Server-rendered pages plus a little static JavaScript (no build step, no CDN). Every change of state
goes through the same service functions the API uses, so the console and boto3 clients always see
the same projects, datasets, models and images.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, redirect


def is_browser_visit(environ: dict[str, Any]) -> bool:
    """A person opening the server's address in a browser: an unsigned GET of ``/`` that accepts
    HTML. It is sent to the console; S3 requests to ``/`` (ListBuckets: signed, or XML) are not."""
    from emulator.s3.frontend import signed_service, virtual_hosted_bucket

    return (environ.get("PATH_INFO", "/") in ("", "/") and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
            and not environ.get("QUERY_STRING") and not environ.get("HTTP_AUTHORIZATION")
            and signed_service(environ) is None and virtual_hosted_bucket(environ) is None
            and "text/html" in environ.get("HTTP_ACCEPT", ""))


def register(app: Flask) -> None:
    """Mount the console blueprint on `app` (importing the view modules adds their routes)."""
    from emulator.console import (  # noqa: F401
        dataset_pages,
        mask_editor,
        model_pages,
        objects,
        project_pages,
        signin,
        trial_pages,
    )
    from emulator.console.blueprint import blueprint

    signin.configure(app)
    app.register_blueprint(blueprint)
    app.add_url_rule("/", "console_root", lambda: redirect("/console/", code=302))
