"""The console bucket: where images uploaded through the console and its models' output live.

Like the real console, the first use creates one bucket named ``lookoutvision-<region>-<random>``;
its name is kept in the metadata store so that it stays the same across restarts. The objects are
ordinary S3 objects, visible to (and usable by) boto3 clients like any other bucket.
"""
from __future__ import annotations

import secrets

from emulator.backend import Backend

BUCKET_SETTING = "bucket"  # the console setting that names it


def console_bucket(backend: Backend) -> str:
    """The console bucket's name, creating the bucket on first use."""
    name = backend.store.console_settings.get(BUCKET_SETTING)
    if name is None:
        name = backend.store.console_settings.setdefault(
            BUCKET_SETTING, f"lookoutvision-{backend.settings.region}-{secrets.token_hex(5)}")
    backend.objects.create_bucket(name)  # idempotent; also recreates it if the S3 store was wiped
    return name
