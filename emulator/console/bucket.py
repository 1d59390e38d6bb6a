"""The console bucket: where images uploaded through the console and its models' output live.

Like the real console, the first use creates one bucket named ``lookoutvision-<region>-<random>``;
its name is kept in the metadata store so that it stays the same across restarts. The objects are
ordinary S3 objects, visible to (and usable by) boto3 clients like any other bucket.
"""
from __future__ import annotations

import secrets

from emulator.backend import Backend


def console_bucket(backend: Backend) -> str:
    """The console bucket's name, creating the bucket on first use."""
    row = backend.store.query_one("SELECT value FROM console_settings WHERE name='bucket'")
    if row is not None:
        name = str(row["value"])
    else:
        candidate = f"lookoutvision-{backend.settings.region}-{secrets.token_hex(5)}"
        with backend.store.transaction() as db:
            db.execute("INSERT OR IGNORE INTO console_settings(name, value) VALUES ('bucket', ?)", (candidate,))
            name = str(db.execute("SELECT value FROM console_settings WHERE name='bucket'").fetchone()["value"])
    backend.objects.create_bucket(name)  # idempotent; also recreates it if the S3 store was wiped
    return name
