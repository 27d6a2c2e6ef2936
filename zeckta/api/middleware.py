import logging
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from zeckta.api.context import request_id_var
from zeckta.api.errors import DATABASE_UNAVAILABLE_ERRORS, INTERNAL_ERROR_MESSAGE, log_database_unavailable
from zeckta.api.responses import json_error_response
from zeckta.errors import DatabaseUnavailable

logger = logging.getLogger("zeckta.api")

API_PREFIX = "/v1/"


class RequestIdMiddleware:
    """Gives every request a fresh requestId: in the logs, the envelope and the X-Request-ID header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Always our own id: a client-chosen one could forge or inject into log lines.
        request_id = str(uuid.uuid4())
        # HttpRequest declares no such attribute; RequestIdFilter reads it back with getattr.
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        if request.path.startswith(API_PREFIX):
            # OTP sessions and balances must never be served from a shared cache.
            response["Cache-Control"] = "no-store"
        return response


class ApiErrorMiddleware:
    """Turns an unhandled exception under /v1/ into the INTERNAL_ERROR envelope, logged with its requestId.

    A lost database connection is the one exception with a better answer: 503 SERVICE_UNAVAILABLE,
    as DRF's exception handler gives for the same error inside a ViewSet.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, DATABASE_UNAVAILABLE_ERRORS):
            log_database_unavailable(exception)
            error = DatabaseUnavailable()
            return json_error_response(status=error.status_code, message=error.message, code=error.code)
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return json_error_response(status=500, message=INTERNAL_ERROR_MESSAGE, code="INTERNAL_ERROR")
