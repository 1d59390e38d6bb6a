"""The web console at ``/console``: the Lookout for Vision console workflow in a browser.

Server-rendered pages plus a little static JavaScript (no build step, no CDN). Every change of state
goes through the same service functions the API uses, so the console and boto3 clients always see
the same projects, datasets, models and images.
"""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Mount the console blueprint on `app` (importing the view modules adds their routes)."""
    from emulator.console import dataset_pages, model_pages, objects, project_pages, signin, trial_pages  # noqa: F401
    from emulator.console.blueprint import blueprint

    signin.configure(app)
    app.register_blueprint(blueprint)
