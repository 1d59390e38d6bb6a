"""The guards of the console's routes, over plain HTTP: what another web site or a crafted URL can't do."""
from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.console.console_data import synthetic_image

BUCKET = "console-guard-tests"


def test_posts_from_other_sites_are_refused(console_url, lookout, project_name):
    """The console has no login: another web site must not be able to drive it from a user's browser."""
    request = urllib.request.Request(f"{console_url}/projects", data=urllib.parse.urlencode(
        {"name": project_name}).encode(), headers={"Origin": "http://attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 403
    assert project_name not in [p["ProjectName"] for p in lookout.list_projects()["Projects"]]


def test_object_route_serves_only_images(console_url, s3):
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="notes.txt", Body=b"<script>alert(1)</script>")
    s3.put_object(Bucket=BUCKET, Key="part.png", Body=synthetic_image(1, False))
    with urllib.request.urlopen(f"{console_url}/object?uri=s3://{BUCKET}/part.png") as reply:
        assert reply.headers["Content-Type"] == "image/png" and reply.read().startswith(b"\x89PNG")
    for key, status in (("notes.txt", 415), ("missing.png", 404)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{console_url}/object?uri=s3://{BUCKET}/{key}")
        assert refused.value.code == status
