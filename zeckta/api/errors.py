"""Protocol errors: what goes wrong with an HTTP request before any domain code runs.

They are ordinary DRF exceptions (DRF's authentication only reports `APIException`s, and its parsers and
throttles raise them); `default_code` is the contract's machine code. Domain failures are
`zeckta.errors.ApplicationError`s instead; `zeckta.api.handlers` renders both in the envelope.
"""

import logging
from typing import Any

from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = "An internal error occurred."


class InvalidHost(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The Host header names no host this service answers for."
    default_code = "INVALID_HOST"


class HttpsRequired(exceptions.APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = (
        "HTTPS is required. This request did not arrive over TLS: treat the API key it carried "
        "as exposed and rotate it."
    )
    default_code = "HTTPS_REQUIRED"


class MalformedJson(exceptions.ParseError):
    default_detail = "The request body is not a valid JSON object."
    default_code = "MALFORMED_JSON"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "PAYLOAD_TOO_LARGE"


class AuthenticationRequired(exceptions.AuthenticationFailed):
    # One message for every credential failure: a client (or an attacker) learns nothing from it.
    default_detail = "Invalid or missing API key."
    default_code = "AUTHENTICATION_FAILED"


class WorkspaceSuspended(exceptions.PermissionDenied):
    default_detail = "This workspace is suspended."
    default_code = "WORKSPACE_SUSPENDED"


class MethodNotAllowed(exceptions.APIException):
    status_code = status.HTTP_405_METHOD_NOT_ALLOWED
    default_detail = "This method is not allowed here."
    default_code = "METHOD_NOT_ALLOWED"


class UnsupportedMediaType(exceptions.APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_detail = "Send the request body as application/json."
    default_code = "UNSUPPORTED_MEDIA_TYPE"


class RateLimited(exceptions.Throttled):
    default_detail = "Too many requests for this API key. Retry later."
    default_code = "RATE_LIMITED"


class AuthenticationRateLimited(RateLimited):
    default_detail = "Too many requests without a valid API key from this address. Retry later."


# Raised by our parsers, authentication and views: their `default_code` and detail are the answer as is.
PROTOCOL_ERRORS = (
    InvalidHost,
    HttpsRequired,
    MalformedJson,
    PayloadTooLarge,
    AuthenticationRequired,
    WorkspaceSuspended,
    MethodNotAllowed,
    UnsupportedMediaType,
)

# Connection-level database failures (server restarted, connection killed, network cut, too many
# clients; also lock/statement timeouts and deadlocks, which psycopg files under OperationalError).
# The request can be retried as is, so the client gets a 503 instead of a 500.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def log_database_unavailable(exc: Exception) -> None:
    """Logs a lost database at error level, with the requestId (added by the log filter).

    Only the class, SQLSTATE and first line of the message: psycopg appends DETAIL/CONTEXT lines that can
    quote row values, and a traceback would repeat them; the SQL and its parameters are never in it.
    """
    cause = exc.__cause__ or exc
    summary = (str(exc).strip().splitlines() or [""])[0][:200]
    logger.error(
        "database unavailable: %s (sqlstate %s) %s",
        type(cause).__name__,
        getattr(cause, "sqlstate", None) or "-",
        summary,
    )


def error_body(
    *, message: str, code: str, data: Any = None, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "message": message, "code": code, "data": data}
    if errors:
        body["errors"] = errors
    return body
