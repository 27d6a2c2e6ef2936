import io
import json
import logging
import sys
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import LimitedStream, WSGIRequest
from django.http import HttpRequest, HttpResponse
from rest_framework.exceptions import APIException

from zeckta.api.context import request_id_var
from zeckta.api.errors import (
    DATABASE_UNAVAILABLE_ERRORS,
    INTERNAL_ERROR_MESSAGE,
    HttpsRequired,
    InvalidHost,
    PayloadTooLarge,
    error_body,
    log_database_unavailable,
)
from zeckta.api.responses import json_error_response
from zeckta.errors import DatabaseUnavailable

logger = logging.getLogger("zeckta.api")

API_PREFIX = "/v1/"
# Where RequestIdMiddleware leaves the id in the WSGI environ (request.META is that dict), for the answer
# `envelope_on_worker_abort` gives after Django's own handling was cut off.
ENVIRON_REQUEST_ID = "zeckta.request_id"


class RequestIdMiddleware:
    """Gives every request a fresh requestId: in the logs, the envelope and the X-Request-ID header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Always our own id: a client-chosen one could forge or inject into log lines.
        request_id = str(uuid.uuid4())
        # HttpRequest declares no such attribute; RequestIdFilter reads it back with getattr.
        request.request_id = request_id  # type: ignore[attr-defined]
        request.META[ENVIRON_REQUEST_ID] = request_id
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


class ApiEdgeMiddleware:
    """What a /v1/ request must pass before anything reads it: a known Host, TLS, and a body of at most
    API_MAX_BODY_BYTES, whether its Content-Length is declared or it comes chunked. Each refusal is an
    envelope, never Django's HTML 400 or a redirect."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
        return self.get_response(request)

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        try:
            request.get_host()
        except DisallowedHost:
            return _protocol_error(InvalidHost)
        # A redirect would come too late: the key has already crossed the network in clear text.
        if settings.SECURE_SSL_REDIRECT and not request.is_secure():
            return _protocol_error(HttpsRequired)
        if not _body_within_limit(request, settings.API_MAX_BODY_BYTES):
            return _protocol_error(
                PayloadTooLarge, f"The request body must be at most {settings.API_MAX_BODY_BYTES} bytes."
            )
        return None


def _body_within_limit(request: HttpRequest, limit: int) -> bool:
    """False when the body is over `limit` bytes, read no further than one byte past it.

    A declared Content-Length over the limit is refused unread. Without one, a server that de-chunks the
    body (gunicorn sets wsgi.input_terminated) lets it be read to its end, which Django alone would not do:
    the capped bytes become the request's body.
    """
    declared = request.META.get("CONTENT_LENGTH")
    if declared:
        try:
            return int(declared) <= limit
        except ValueError:
            return True  # Django reads an unparsable length as no body at all
    if not isinstance(request, WSGIRequest) or not request.META.get("wsgi.input_terminated"):
        return True
    raw = request.META["wsgi.input"].read(limit + 1)
    if len(raw) > limit:
        return False
    # Django's own attribute, read by request.body: the capped bytes stand in for the consumed input.
    request._stream = LimitedStream(io.BytesIO(raw), len(raw))  # type: ignore[assignment]
    request.META["CONTENT_LENGTH"] = str(len(raw))
    return True


def _protocol_error(error: type[APIException], message: str | None = None) -> HttpResponse:
    return json_error_response(
        status=error.status_code, message=message or str(error.default_detail), code=str(error.default_code)
    )


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
            response = json_error_response(status=error.status_code, message=error.message, code=error.code)
            for name, value in error.headers.items():
                response[name] = value  # Retry-After
            return response
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return json_error_response(status=500, message=INTERNAL_ERROR_MESSAGE, code="INTERNAL_ERROR")


def envelope_on_worker_abort(application: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI application, with a /v1/ request that gunicorn aborts answered 503 SERVICE_UNAVAILABLE in the
    envelope instead of gunicorn's own HTML 500.

    gunicorn's master aborts a sync worker that has not finished a request within --timeout (30 s): SIGABRT,
    whose handler raises SystemExit wherever the worker is waiting. The database time limits
    (DATABASE_CONNECT_TIMEOUT_SECONDS, DATABASE_STATEMENT_TIMEOUT_SECONDS) end nearly every wait long before
    that, and TCP keepalives find a host that vanished (settings); what none of them ends is a PostgreSQL
    whose host still answers TCP but whose server never answers (a paused container, a stopped process),
    where even the COMMIT's reply may never come. Such a
    request may have committed: 503 with Retry-After tells the client to retry, which the service's request
    reuse and idempotency keys make safe. The worker still exits after this answer (gunicorn has marked it
    not alive), and the master starts a fresh one.
    """

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            return application(environ, start_response)
        except SystemExit:
            if not str(environ.get("PATH_INFO", "")).startswith(API_PREFIX):
                raise
            logger.error("worker aborted on %s %s: answered 503", environ.get("REQUEST_METHOD"), environ["PATH_INFO"])
            error = DatabaseUnavailable()
            request_id = environ.get(ENVIRON_REQUEST_ID)
            body = json.dumps({**error_body(message=error.message, code=error.code), "requestId": request_id}).encode()
            headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *error.headers.items()]
            headers.append(("Content-Length", str(len(body))))
            if request_id:
                headers.append(("X-Request-ID", request_id))
            start_response("503 Service Unavailable", headers, sys.exc_info())
            return [body]

    return serve
