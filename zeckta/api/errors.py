"""One error type for the domain and one handler that renders every API error in the envelope."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(exceptions.APIException):
    """A failure the client can act on: a stable `code`, an HTTP status and a human message.

    `errors` carries field problems ({"field": ["message"]}); `data` is returned as the envelope's data.
    """

    status_code = status.HTTP_400_BAD_REQUEST
    code = "BAD_REQUEST"
    default_message = "The request could not be processed."

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: dict[str, list[str]] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.errors = errors
        self.data = data
        self.headers = headers or {}
        super().__init__(detail=self.message, code=self.code)


class ValidationFailed(ApplicationError):
    code = "VALIDATION_ERROR"
    default_message = "The request has invalid fields."

    @classmethod
    def for_field(cls, field: str, message: str) -> "ValidationFailed":
        return cls(errors={field: [message]})


class MalformedJson(ApplicationError):
    code = "MALFORMED_JSON"
    default_message = "The request body is not a valid JSON object."


class AuthenticationRequired(ApplicationError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "AUTHENTICATION_FAILED"
    # One message for every credential failure: a client (or an attacker) learns nothing from it.
    default_message = "Invalid or missing API key."


class WorkspaceSuspended(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "WORKSPACE_SUSPENDED"
    default_message = "This workspace is suspended."


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "NOT_FOUND"
    default_message = "The requested resource was not found."


class MethodNotAllowed(ApplicationError):
    status_code = status.HTTP_405_METHOD_NOT_ALLOWED
    code = "METHOD_NOT_ALLOWED"
    default_message = "This method is not allowed here."


class PayloadTooLarge(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "PAYLOAD_TOO_LARGE"
    default_message = "The request body is too large."


class UnsupportedMediaType(ApplicationError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "Send the request body as application/json."


class RateLimited(ApplicationError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "RATE_LIMITED"
    default_message = "Too many requests for this API key. Retry later."


class ServiceUnavailable(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "SERVICE_UNAVAILABLE"
    default_message = "The service is temporarily unavailable. Retry later."


class DatabaseUnavailable(ServiceUnavailable):
    default_message = "The database is temporarily unavailable. Retry later."


INTERNAL_ERROR_MESSAGE = "An internal error occurred."

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
    logger.error("database unavailable: %s (sqlstate %s) %s", type(cause).__name__,
                 getattr(cause, "sqlstate", None) or "-", summary)


def error_body(*, message: str, code: str, data: Any = None, errors: dict | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "message": message, "code": code, "data": data}
    if errors:
        body["errors"] = errors
    return body


def _field_errors(detail: Any) -> dict[str, list[str]]:
    """DRF's nested ValidationError detail as {"field": ["message", ...]} (nested paths dotted)."""
    if isinstance(detail, list):
        return {"nonFieldErrors": [str(item) for item in detail]}
    flat: dict[str, list[str]] = {}
    for field, value in detail.items():
        name = "nonFieldErrors" if field == "non_field_errors" else str(field)
        if isinstance(value, dict):
            for inner, messages in _field_errors(value).items():
                flat[f"{name}.{inner}"] = messages
        elif isinstance(value, list):
            flat[name] = [str(item) for item in value]
        else:
            flat[name] = [str(value)]
    return flat


def _as_application_error(exc: Exception) -> ApplicationError | None:
    """Maps Django and DRF exceptions onto the contract's codes; None for unknown exceptions."""
    if isinstance(exc, ApplicationError):
        return exc
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        return DatabaseUnavailable()
    if isinstance(exc, exceptions.ValidationError):
        return ValidationFailed(errors=_field_errors(exc.detail))
    if isinstance(exc, exceptions.ParseError):
        return MalformedJson()
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return AuthenticationRequired()
    if isinstance(exc, (Http404, exceptions.NotFound)):
        return NotFound()
    if isinstance(exc, exceptions.MethodNotAllowed):
        return MethodNotAllowed()
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return UnsupportedMediaType()
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        return RateLimited(headers={"Retry-After": str(max(wait, 1))})
    if isinstance(exc, (DjangoPermissionDenied, exceptions.PermissionDenied)):
        error = ApplicationError("You do not have permission to do this.")
        error.status_code, error.code = status.HTTP_403_FORBIDDEN, "FORBIDDEN"
        return error
    if isinstance(exc, exceptions.APIException):
        error = ApplicationError(str(exc.detail))
        error.status_code = exc.status_code
        error.code = str(exc.default_code).upper()
        return error
    return None


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every known error in the envelope; unknown ones stay 500s."""
    # Imported here: rest_framework.views imports the authentication classes, which import this module.
    from rest_framework.views import set_rollback

    error = _as_application_error(exc)
    if error is None:
        return None  # re-raised by DRF; ApiErrorMiddleware logs it and answers INTERNAL_ERROR
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        log_database_unavailable(exc)
    headers = dict(error.headers)
    if error.status_code == status.HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    set_rollback()
    body = error_body(message=error.message, code=error.code, data=error.data, errors=error.errors)
    return Response(body, status=error.status_code, headers=headers)
