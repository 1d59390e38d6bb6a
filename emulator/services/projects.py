"""Projects: CreateProject, DescribeProject, ListProjects, DeleteProject."""
from __future__ import annotations

import sqlite3
from typing import Any

from emulator.backend import Backend
from emulator.errors import ConflictException, ResourceNotFoundException
from emulator.operations import operation
from emulator.pagination import decode_token, encode_token, page_size


def project_arn(backend: Backend, name: str) -> str:
    return backend.arn(f"project/{name}")


def get_project(backend: Backend, name: str) -> sqlite3.Row:
    """The project's row, or the ResourceNotFoundException every project-scoped call answers."""
    row = backend.store.query_one("SELECT * FROM projects WHERE name=?", (name,))
    if row is None:
        raise ResourceNotFoundException(f"The project {name} does not exist.", resource_id=name,
                                        resource_type="PROJECT")
    return row


def _metadata(row: sqlite3.Row) -> dict[str, Any]:
    return {"ProjectArn": row["arn"], "ProjectName": row["name"], "CreationTimestamp": row["created_at"]}


@operation("CreateProject")
def create_project(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    name = params["ProjectName"]
    with backend.store.transaction() as db:
        if db.execute("SELECT 1 FROM projects WHERE name=?", (name,)).fetchone():
            raise ConflictException(f"A project named {name} already exists.", resource_id=name,
                                    resource_type="PROJECT")
        db.execute("INSERT INTO projects(name, arn, created_at) VALUES (?,?,?)",
                   (name, project_arn(backend, name), backend.now()))
    return {"ProjectMetadata": _metadata(get_project(backend, name))}


@operation("DescribeProject")
def describe_project(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    row = get_project(backend, params["ProjectName"])
    return {"ProjectDescription": {**_metadata(row), "Datasets": []}}


@operation("ListProjects")
def list_projects(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    after = decode_token(params.get("NextToken")) or ""
    size = page_size(params.get("MaxResults"))
    rows = backend.store.query("SELECT * FROM projects WHERE name>? ORDER BY name LIMIT ?", (after, size + 1))
    result: dict[str, Any] = {"Projects": [_metadata(r) for r in rows[:size]]}
    if len(rows) > size:
        result["NextToken"] = encode_token(rows[size - 1]["name"])
    return result


@operation("DeleteProject")
def delete_project(backend: Backend, params: dict[str, Any]) -> dict[str, Any]:
    name = params["ProjectName"]
    row = get_project(backend, name)
    with backend.store.transaction() as db:
        db.execute("DELETE FROM projects WHERE name=?", (name,))
        db.execute("DELETE FROM tags WHERE resource_arn=?", (row["arn"],))
    return {"ProjectArn": row["arn"]}
