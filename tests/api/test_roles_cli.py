"""``serve --role``: what the command line accepts and refuses (the roles at work: test_hosting_fleet.py)."""
from __future__ import annotations

import pytest

from emulator.cli import build_parser, parse_args
from tests.api.test_cli import one_line_refusal, run_cli

SUBSET = "the embedded SQLite database serves all roles in one process"


@pytest.mark.parametrize("flags, env, message", [
    (["--role", "api,gpu"], {}, "argument --role: 'gpu' is not a role; use a comma-separated subset of "
                                "api,inference,worker"),
    (["--role", ""], {}, "argument --role: names no role"),
    (["--role", " , "], {}, "argument --role: names no role"),
    ([], {"LOOKOUT_ROLE": "inferense"}, "environment variable LOOKOUT_ROLE: 'inferense' is not a role"),
    (["--role", "api"], {}, f"--role api needs a PostgreSQL --database-url shared with the nodes of the other "
                            f"roles; {SUBSET}"),
    (["--role", "worker,inference"], {}, "--role inference,worker needs a PostgreSQL --database-url"),
    ([], {"LOOKOUT_ROLE": "inference"}, "--role inference needs a PostgreSQL --database-url"),
    (["--role", "api", "--database-url", "sqlite:///elsewhere.sqlite3"], {}, "--role api needs a PostgreSQL"),
])
def test_bad_roles_are_refused_in_one_line_before_anything_opens(tmp_path, flags, env, message):
    line = one_line_refusal(run_cli("serve", "--data-dir", str(tmp_path / "data"), *flags, env=env))
    assert message in line, line
    assert not (tmp_path / "data").exists()


def test_roles_are_read_in_any_order_and_default_to_all_three(monkeypatch):
    monkeypatch.delenv("LOOKOUT_ROLE", raising=False)
    assert parse_args(build_parser(), ["serve"]).role == ("api", "inference", "worker")
    assert parse_args(build_parser(), ["serve", "--role", "worker, api,api"]).role == ("api", "worker")
    # All three in any spelling need no PostgreSQL: it is the default.
    monkeypatch.setenv("LOOKOUT_ROLE", "worker,inference,api")
    assert parse_args(build_parser(), ["serve"]).role == ("api", "inference", "worker")
