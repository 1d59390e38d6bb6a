"""What every console page shares: the blueprint, service calls, messages and error handling."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from markupsafe import Markup, escape

from emulator.api import dispatch
from emulator.api.errors import ServiceError
from emulator.api.schemas import load_input
from emulator.api.servicemodel import service_model
from emulator.api.statuses import ModelStatus
from emulator.backend import Backend
from emulator.console.words import natural_key

blueprint = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                      static_folder="static", static_url_path="/static")


def backend() -> Backend:
    return cast(Backend, current_app.extensions["lookout_backend"])


def call(operation: str, **params: Any) -> dict[str, Any]:
    """Run an API operation exactly as a boto3 call would: same validation, same service function."""
    validated = load_input(service_model().operation_model(operation), params)
    return dispatch.call(operation, validated)


def call_all(operation: str, items: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paged List operation (the console shows whole lists; the API pages them)."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = call(operation, **params, **({"NextToken": token} if token else {}))
        found += page[items]
        token = page.get("NextToken")
        if not token:
            return found


def back_to(url: str, notice: str | None = None, error: str | None = None) -> Response:
    """Redirect to `url` carrying a one-off message (in the query string: the console keeps no session)."""
    extra = {key: value for key, value in (("notice", notice), ("error", error)) if value}
    if extra:
        url += ("&" if "?" in url else "?") + urlencode(extra)
    return cast(Response, redirect(url, code=303))  # the app's response class: a flask Response


def wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json" or request.path.endswith(".json")


@blueprint.errorhandler(ServiceError)
def service_error(error: ServiceError) -> Response | tuple[Response | str, int]:
    """Show the service's own message: as JSON to scripts, on the page a form came from, or alone."""
    if wants_json():
        return jsonify(error=error.message, code=error.code), error.status
    if request.method == "POST":
        return back_to(_referring_page(), error=error.message)
    return render_template("error.html", message=error.message, code=error.code), error.status


def _referring_page() -> str:
    """The console page a form was posted from, without its old messages (the console index otherwise)."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc != request.host or not referrer.path.startswith("/console"):
        return "/console/"
    query = urlencode([(k, v) for k, v in parse_qsl(referrer.query) if k not in ("notice", "error")])
    return referrer.path + ("?" + query if query else "")


@blueprint.app_context_processor
def statuses() -> dict[str, Any]:
    """Templates compare with the service model's statuses, not with strings typed again."""
    return {"ModelStatus": ModelStatus}


@blueprint.app_template_filter("when")
def format_time(value: Any) -> str:
    """Timestamps as the service returns them (epoch seconds or datetime), shown in UTC."""
    if value is None:
        return ""
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    return str(value.strftime("%Y-%m-%d %H:%M:%S UTC"))


@blueprint.app_template_filter("percent")
def format_percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


@blueprint.app_template_filter("report_value")
def format_report_value(value: Any) -> str:
    """A training report value in one line: floats to 3 decimals, mappings as ``key: value`` (nested
    ones in brackets), lists joined by ×."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        parts = ((key, format_report_value(item), isinstance(item, dict)) for key, item in sorted(value.items()))
        return ", ".join(f"{key}: ({text})" if nested else f"{key}: {text}" for key, text, nested in parts)
    if isinstance(value, list):
        return " × ".join(format_report_value(item) for item in value)
    return str(value)


@blueprint.app_template_filter("natural_sort")
def natural_sort(items: Iterable[Any], attribute: str) -> list[Any]:
    """`items` ordered by `attribute` as people expect: anomaly-2 before anomaly-10."""
    return sorted(items, key=lambda item: natural_key(
        str(item[attribute] if isinstance(item, dict) else getattr(item, attribute))))


@blueprint.app_template_filter("breakable")
def breakable(name: str) -> Markup:
    """A long name that may wrap after its hyphens, underscores and dots, never inside a word."""
    return Markup("<wbr>").join(escape(part) for part in re.split(r"(?<=[-_.])", name))
