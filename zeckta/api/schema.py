"""OpenAPI pieces for drf-spectacular: the envelope around every answer, and the Bearer scheme."""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, inline_serializer
from rest_framework import serializers

# What each error status means across the API (the `code` values of API.md section 1).
ERROR_MEANINGS = {
    400: "VALIDATION_ERROR (with `errors`), MALFORMED_JSON (not a JSON object, or nested deeper than 32 levels) "
    "or INVALID_HOST (a Host outside ALLOWED_HOSTS)",
    401: "AUTHENTICATION_FAILED: missing, malformed, unknown, revoked or expired key (one identical body)",
    402: "INSUFFICIENT_BALANCE: a prepaid workspace cannot pay for the SMS",
    403: "WORKSPACE_SUSPENDED, or HTTPS_REQUIRED (plain HTTP in production; never a redirect)",
    404: "NOT_FOUND (another workspace's object answers the same)",
    405: "METHOD_NOT_ALLOWED",
    409: "IDEMPOTENCY_KEY_REUSED, SESSION_NOT_PENDING (resend or cancel of a session no longer pending), "
    "RESEND_LIMIT_REACHED, SENDER_NAME_EXISTS or SENDER_NAME_NOT_EDITABLE",
    410: "EXPIRED: the session's validity elapsed",
    413: "PAYLOAD_TOO_LARGE: a body over 64 KiB, declared, chunked or not",
    415: "UNSUPPORTED_MEDIA_TYPE: send application/json",
    429: "RATE_LIMITED (per key, or per address for requests without a valid key), DESTINATION_RATE_LIMITED "
    "(SMS or wrong codes to one number), RESEND_TOO_SOON (before resendAvailableInSeconds) or "
    "WORKSPACE_QUOTA_EXCEEDED (the daily cap); see Retry-After",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE: a dependency needed to answer safely is down",
}

# Every machine `code` an error can carry (API.md section 1, and a failed verify's outcome).
ERROR_CODES = (
    "VALIDATION_ERROR",
    "MALFORMED_JSON",
    "INVALID_HOST",
    "AUTHENTICATION_FAILED",
    "INSUFFICIENT_BALANCE",
    "WORKSPACE_SUSPENDED",
    "HTTPS_REQUIRED",
    "DESTINATION_BLOCKED",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE",
    "IDEMPOTENCY_KEY_REUSED",
    "SESSION_NOT_PENDING",
    "RESEND_LIMIT_REACHED",
    "SENDER_NAME_EXISTS",
    "SENDER_NAME_NOT_EDITABLE",
    "RATE_LIMITED",
    "DESTINATION_RATE_LIMITED",
    "RESEND_TOO_SOON",
    "WORKSPACE_QUOTA_EXCEEDED",
    "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
    "INVALID",
    "EXPIRED",
    "MAX_ATTEMPTS_REACHED",
    "ALREADY_USED",
    "CANCELED",
    "LIVE_KEY_REQUIRED",
    "RELAY_DISABLED",
    "FORBIDDEN",  # a provider receipt that failed its route's authentication (section 11)
)
COMMON_ERRORS = (400, 401, 403, 405, 413, 415, 429, 500)


def envelope(name: str, data: serializers.Field | serializers.Serializer) -> serializers.Serializer:
    return inline_serializer(
        name=name,
        fields={
            "success": serializers.BooleanField(),
            "message": serializers.CharField(),
            "data": data,
            "requestId": serializers.UUIDField(),
        },
    )


def error_envelope(name: str = "ErrorEnvelope", data: serializers.Field | None = None) -> serializers.Serializer:
    return inline_serializer(
        name=name,
        fields={
            "success": serializers.BooleanField(),
            "message": serializers.CharField(),
            "code": serializers.ChoiceField(choices=ERROR_CODES, help_text="Stable UPPER_SNAKE machine code."),
            "data": data if data is not None else serializers.JSONField(allow_null=True),
            "errors": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()),
                required=False,
                help_text="Field problems: {field: [message, ...]}.",
            ),
            "requestId": serializers.UUIDField(),
        },
    )


ERROR_ENVELOPE = error_envelope()  # one component, shared by every operation


def error_responses(*statuses: int, overrides: dict[int, OpenApiResponse] | None = None) -> dict:
    responses = {status: OpenApiResponse(ERROR_ENVELOPE, description=ERROR_MEANINGS[status]) for status in statuses}
    responses.update(overrides or {})
    return responses


# The 403 of an operation that changes live configuration (API.md section 10).
LIVE_KEY_REQUIRED = {
    403: OpenApiResponse(
        ERROR_ENVELOPE,
        description=f"LIVE_KEY_REQUIRED: a test key cannot change live configuration; or {ERROR_MEANINGS[403]}",
    )
}

# The 403 of an operation that sends an OTP SMS (request, resend): the fraud guard's refusal (API.md section 13),
# which names no rule and no end time.
DESTINATION_BLOCKED = {
    403: OpenApiResponse(
        ERROR_ENVELOPE,
        description="DESTINATION_BLOCKED: the fraud guard blocks the number's range or country (nothing sent or "
        f"charged; the answer says no more); or {ERROR_MEANINGS[403]}",
    )
}


def example(name: str, value: dict, *, status: int = 200, request: bool = False) -> OpenApiExample:
    return OpenApiExample(
        name, value=value, status_codes=[str(status)], request_only=request, response_only=not request
    )
