"""Liveness and readiness of one server, for load balancers and Kubernetes probes.

Alive means the process answers HTTP, nothing more: a liveness probe that touched the database or S3
would have a healthy process restarted whenever a dependency has a bad minute. Ready means this
server can do its work now: the metadata database answers, its schema is the current one, and the
S3 store (embedded or external) answers. Answers name each check and whether it passed, never why it
failed: probes are unauthenticated, and the reasons (paths, endpoints, driver messages) stay in the
server's log, written when a check starts or stops failing rather than at every probe.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from emulator.backend import Backend

log = logging.getLogger(__name__)
PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, str]  # check name -> PASS, FAIL or SKIPPED (not run: the database did not answer)

    @property
    def ready(self) -> bool:
        return all(result == PASS for result in self.checks.values())


class ReadinessProbe:
    """The checks of one backend, remembering why each failed last so that each change is logged once."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._failing: dict[str, str] = {}

    def run(self) -> Readiness:
        problems = {"database": self._backend.store.ping()}
        if problems["database"] is None:
            problems["schema"] = self._backend.store.schema_problem()
        problems["s3"] = self._backend.objects.ping()
        self._log_changes(problems)
        checks = {name: FAIL if problems[name] else PASS for name in problems}
        return Readiness({"database": checks["database"], "schema": checks.get("schema", SKIPPED), "s3": checks["s3"]})

    def _log_changes(self, problems: dict[str, str | None]) -> None:
        with self._lock:
            for name, problem in problems.items():
                before = self._failing.get(name)
                if problem and problem != before:
                    log.warning("readiness check %s fails: %s", name, problem)
                    self._failing[name] = problem
                elif not problem and before:
                    log.info("readiness check %s passes again", name)
                    del self._failing[name]
