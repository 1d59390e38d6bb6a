"""Prometheus metrics of one server (prometheus-client), exposed at ``/metrics``.

Each app has a registry of its own rather than prometheus-client's process-wide default, because
several emulators can share a process (tests, `mock_lookoutvision`) and each must count only its
own requests. Requests are counted as they pass through the front ends (`ServerMetrics.api` and
`ServerMetrics.s3` wrap them); jobs, queue depth, hosted models and running trainings are read from
the backend when Prometheus scrapes, so nothing has to keep them in step.

Labels hold only values from small fixed sets (operation names, job kinds, outcomes, HTTP methods
and statuses), never a project, key or client-supplied string, so a client cannot make the series
grow without bound.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from emulator.backend import Backend
from emulator.services import hosting, training_job
from emulator.wsgi import OPERATION_ENVIRON_KEY, WSGIApp

# S3 methods counted by name; anything else a client sends is counted as "other".
S3_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"})
# Latency buckets (seconds): DescribeModel answers in about a millisecond, DetectAnomalies in tens
# of milliseconds on a CPU, CreateDataset with a large manifest in seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """The registry of one app and the request counters its front ends update."""

    def __init__(self, backend: Backend) -> None:
        self.registry = CollectorRegistry()
        self.api_requests = Counter("lookout_api_requests", "Lookout for Vision API requests by operation and HTTP "
                                    "status", ("operation", "status"), registry=self.registry)
        self.api_latency = Histogram("lookout_api_request_duration_seconds", "Time to answer a Lookout for "
                                     "Vision API request, by operation", ("operation",), buckets=LATENCY_BUCKETS,
                                     registry=self.registry)
        self.s3_requests = Counter("lookout_s3_requests", "Embedded S3 requests by HTTP method and status",
                                   ("method", "status"), registry=self.registry)
        self.refused = Counter("lookout_refused_requests", "Requests the request gate refused, by the front end "
                               "they were meant for and the reason", ("front_end", "reason"), registry=self.registry)
        self.registry.register(_BackendCollector(backend))

    def api(self, app: WSGIApp) -> WSGIApp:
        """`app` (the Flask app of the API and the console), counting and timing API requests by the
        operation the dispatcher matched (console pages, which name none, are not counted)."""

        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            started = time.perf_counter()
            status: list[str] = []
            response = app(environ, _recording(start_response, status))
            operation = environ.get(OPERATION_ENVIRON_KEY)
            if operation is not None:
                self.api_latency.labels(operation).observe(time.perf_counter() - started)
                self.api_requests.labels(operation, _code(status)).inc()
            return response

        return counted

    def s3(self, app: WSGIApp) -> WSGIApp:
        """`app` (the S3 front end), counting its requests by method and status."""

        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            status: list[str] = []
            response = app(environ, _recording(start_response, status))
            method = environ.get("REQUEST_METHOD", "")
            self.s3_requests.labels(method if method in S3_METHODS else "other", _code(status)).inc()
            return response

        return counted

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (Prometheus text or OpenMetrics) and its
        content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _recording(start_response: Callable[..., Any], status: list[str]) -> Callable[..., Any]:
    def record(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(line)
        return start_response(line, headers, exc_info)

    return record


def _code(status: list[str]) -> str:
    """The numeric status of the last response line started ("none" if the app started none)."""
    return status[-1].split(" ", 1)[0] if status else "none"


class _BackendCollector(Collector):
    """Jobs, queue depth, hosted models and running trainings, read from the backend at each scrape."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def collect(self) -> Iterator[Metric]:
        stats = self._backend.jobs.stats()
        started = CounterMetricFamily("lookout_jobs_started", "Background jobs started, by kind", labels=("kind",))
        for kind, count in sorted(stats.started.items()):
            started.add_metric((kind,), count)
        finished = CounterMetricFamily("lookout_jobs_finished", "Background jobs finished, by kind and outcome "
                                       "(succeeded, failed, interrupted, skipped)",
                                       labels=("kind", "outcome"))
        for (kind, outcome), count in sorted(stats.finished.items()):
            finished.add_metric((kind, str(outcome)), count)
        running = GaugeMetricFamily("lookout_jobs_running", "Background jobs running now, by kind", labels=("kind",))
        for kind, count in sorted(stats.running.items()):
            running.add_metric((kind,), count)
        yield from (started, finished, running)
        yield GaugeMetricFamily("lookout_jobs_queued", "Background jobs waiting for a free worker", value=stats.queued)
        yield GaugeMetricFamily("lookout_hosted_models", "Models loaded and serving DetectAnomalies on this server",
                                value=hosting.registry(self._backend).serving())
        yield GaugeMetricFamily("lookout_trainings_running", "Model trainings running on this server",
                                value=training_job.trainings_running(self._backend))
