"""The domain's error family: plain exceptions, free of DRF and HTTP imports.

Services, selectors and billing raise these; the API layer (`zeckta.api.handlers`) renders them in the
envelope, and operator commands (`zeckta.commands`) print `message` as one line. `status_code` is read only
by the API layer: it is the answer a client gets, kept beside the code so each error is defined once.
"""

from typing import Any


class ApplicationError(Exception):
    """A failure the caller can act on: a stable `code`, an HTTP status and a human message.

    `errors` carries field problems ({"field": ["message"]}); `data` is returned as the envelope's data;
    `headers` are added to the API answer (Retry-After).
    """

    status_code = 400
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
        super().__init__(self.message)


class ValidationFailed(ApplicationError):
    code = "VALIDATION_ERROR"
    default_message = "The request has invalid fields."

    @classmethod
    def for_field(cls, field: str, message: str) -> "ValidationFailed":
        return cls(errors={field: [message]})


class NotFound(ApplicationError):
    """Missing, and another workspace's object, answer alike: existence is not leaked."""

    status_code = 404
    code = "NOT_FOUND"
    default_message = "The requested resource was not found."


class Conflict(ApplicationError):
    status_code = 409
    code = "CONFLICT"
    default_message = "The request conflicts with the current state."


class Gone(ApplicationError):
    status_code = 410
    code = "GONE"
    default_message = "The resource is no longer available."


class TooManyRequests(ApplicationError):
    """A limit of the domain (not the per-key rate): the answer says when to retry."""

    status_code = 429
    code = "TOO_MANY_REQUESTS"
    default_message = "Too many requests. Retry later."

    def __init__(self, message: str | None = None, *, retry_after_seconds: int) -> None:
        self.retry_after_seconds = max(retry_after_seconds, 1)
        super().__init__(message, headers={"Retry-After": str(self.retry_after_seconds)})


class ServiceUnavailable(ApplicationError):
    """A dependency needed to answer safely is down. The answer says when to retry: a client that retries at
    once, in a loop, only adds to the load of whatever is recovering."""

    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    default_message = "The service is temporarily unavailable. Retry later."
    retry_after_seconds = 5  # about a database restart or a failover

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"Retry-After": str(self.retry_after_seconds)})


class DatabaseUnavailable(ServiceUnavailable):
    default_message = "The database is temporarily unavailable. Retry later."
