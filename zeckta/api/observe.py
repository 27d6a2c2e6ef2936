"""What every request leaves behind for operators: its log context, its time and status in the metrics, and
for a /v1/ answer of 4xx or 5xx one log line at WARNING or ERROR.

Right after RequestIdMiddleware, so the request's id is set and the time covers the rest of the stack.
No SQL, no Redis: metric updates are in-process (or a write to this process's memory-mapped file).
"""

import json
import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from zeckta import metrics
from zeckta.api.context import LogContext, log_context_var

logger = logging.getLogger("zeckta.api")

API_PREFIX = "/v1/"
UNMATCHED_VIEW = "unmatched"  # answered before any view: unknown path, bad Host, plain HTTP, body too large


class ObserveMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        context = LogContext()
        # Read back by RequestIdFilter for django.request's lines, which come after the middleware returned.
        request.log_context = context  # type: ignore[attr-defined]
        token = log_context_var.set(context)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            view = _view_name(request)
            metrics.HTTP_REQUEST_SECONDS.labels(view=view).observe(time.perf_counter() - started)
            metrics.HTTP_RESPONSES.labels(view=view, status=str(response.status_code)).inc()
            if response.status_code >= 400 and request.path.startswith(API_PREFIX):
                _log_error_answer(request, response)
        finally:
            log_context_var.reset(token)
        return response


def _log_error_answer(request: HttpRequest, response: HttpResponse) -> None:
    level = logging.ERROR if response.status_code >= 500 else logging.WARNING
    logger.log(
        level,
        "%s %s answered %s %s",
        request.method,
        request.path,
        response.status_code,
        _error_code(response),
        extra={"status_code": response.status_code},
    )
    # Django's own line for the same answer (django.request) says less: the service's log handler leaves it
    # out (RequestIdFilter), other handlers (a test's capture) still get it.
    request.error_logged = True  # type: ignore[attr-defined]


def _view_name(request: HttpRequest) -> str:
    """The URL pattern's name ("otp-request", "admin:index"...): a label value from the URLconf, bounded."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_VIEW
    return match.view_name or UNMATCHED_VIEW


def _error_code(response: HttpResponse) -> str:
    """The envelope's `code` (DRF's data before rendering, else the JSON body); "-" without one."""
    data = getattr(response, "data", None)
    if data is None and response.get("Content-Type", "").startswith("application/json"):
        try:
            data = json.loads(response.content)
        except (ValueError, AttributeError):
            data = None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else "-"
