"""The one place where exceptions become answers: DRF's EXCEPTION_HANDLER, in the envelope of API.md."""

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from zeckta.api.errors import (
    DATABASE_UNAVAILABLE_ERRORS,
    PROTOCOL_ERRORS,
    AuthenticationRequired,
    MalformedJson,
    MethodNotAllowed,
    RateLimited,
    UnsupportedMediaType,
    error_body,
    log_database_unavailable,
)
from zeckta.errors import ApplicationError, DatabaseUnavailable, NotFound, ValidationFailed


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    code: str
    message: str
    errors: dict[str, list[str]] | None = None
    data: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, error: ApplicationError) -> "ErrorAnswer":
        return cls(error.status_code, error.code, error.message, error.errors, error.data, dict(error.headers))

    @classmethod
    def of_api_exception(cls, exc: exceptions.APIException, *, code: str | None = None) -> "ErrorAnswer":
        """A DRF exception: its status and detail; its `default_code` is the contract's code for ours."""
        default = type(exc).default_detail
        message = str(exc.detail) if isinstance(exc.detail, str) else str(default)
        return cls(exc.status_code, code or str(exc.default_code).upper(), message)


def _field_errors(detail: Any) -> dict[str, list[str]]:
    """DRF's nested ValidationError detail as {"field": ["message", ...]} (nested paths dotted)."""
    if isinstance(detail, list):
        return {"nonFieldErrors": [str(item) for item in detail]}
    flat: dict[str, list[str]] = {}
    for name_, value in detail.items():
        name = "nonFieldErrors" if name_ == "non_field_errors" else str(name_)
        if isinstance(value, dict):
            for inner, messages in _field_errors(value).items():
                flat[f"{name}.{inner}"] = messages
        elif isinstance(value, list):
            flat[name] = [str(item) for item in value]
        else:
            flat[name] = [str(value)]
    return flat


def _ours(exc: exceptions.APIException, ours: type[exceptions.APIException]) -> ErrorAnswer:
    """A DRF exception of a kind the contract names: our code and message, whatever DRF's detail said."""
    return ErrorAnswer(exc.status_code, str(ours.default_code), str(ours.default_detail))


def error_answer(exc: Exception) -> ErrorAnswer | None:
    """Maps domain, DRF and Django exceptions onto the contract's codes; None for unknown exceptions."""
    if isinstance(exc, ApplicationError):
        return ErrorAnswer.of(exc)
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        return ErrorAnswer.of(DatabaseUnavailable())
    if isinstance(exc, (Http404, exceptions.NotFound)):
        return ErrorAnswer.of(NotFound())
    if isinstance(exc, DjangoPermissionDenied):
        return ErrorAnswer(status.HTTP_403_FORBIDDEN, "FORBIDDEN", "You do not have permission to do this.")
    if not isinstance(exc, exceptions.APIException):
        return None
    if isinstance(exc, exceptions.Throttled):
        # DRF's own throttles answer as the per-key limit; ours carry their message.
        return _with_retry_after(_ours(exc, type(exc) if isinstance(exc, RateLimited) else RateLimited), exc)
    if isinstance(exc, PROTOCOL_ERRORS):
        return ErrorAnswer.of_api_exception(exc)
    # DRF's own: renamed to the contract's codes.
    if isinstance(exc, exceptions.ValidationError):
        return ErrorAnswer.of(ValidationFailed(errors=_field_errors(exc.detail)))
    if isinstance(exc, exceptions.ParseError):
        return _ours(exc, MalformedJson)
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        return ErrorAnswer(
            status.HTTP_401_UNAUTHORIZED,
            str(AuthenticationRequired.default_code),
            str(AuthenticationRequired.default_detail),
        )
    if isinstance(exc, exceptions.MethodNotAllowed):
        return _ours(exc, MethodNotAllowed)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return _ours(exc, UnsupportedMediaType)
    if isinstance(exc, exceptions.PermissionDenied):
        return ErrorAnswer(status.HTTP_403_FORBIDDEN, "FORBIDDEN", "You do not have permission to do this.")
    return ErrorAnswer.of_api_exception(exc)


def _with_retry_after(answer: ErrorAnswer, exc: exceptions.Throttled) -> ErrorAnswer:
    # Whole seconds, at least one: a 429 always says when to come back.
    # The stubs leave out the `wait` that Throttled.__init__ sets (seconds, or None).
    wait = max(int(exc.wait or 1), 1)  # type: ignore[attr-defined]
    return ErrorAnswer(answer.status, answer.code, answer.message, headers={"Retry-After": str(wait)})


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every known error in the envelope; unknown ones stay 500s."""
    answer = error_answer(exc)
    if answer is None:
        return None  # re-raised by DRF; ApiErrorMiddleware logs it and answers INTERNAL_ERROR
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        log_database_unavailable(exc)
    headers = dict(answer.headers)
    if answer.status == status.HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = "Bearer"
    set_rollback()
    body = error_body(message=answer.message, code=answer.code, data=answer.data, errors=answer.errors)
    return Response(body, status=answer.status, headers=headers)
