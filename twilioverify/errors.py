"""Twilio's error shape for the door: `{"code", "message", "more_info", "status"}` with Twilio's own numbers.

Every error of the service keeps its meaning and its HTTP status where Twilio has the same one; the table
below only says which Twilio code a client of the Twilio SDK will see for it (`TwilioRestException.code`).
Matched on the ApplicationError's `code` string, so that an error another app adds (the fraud guard's
DESTINATION_BLOCKED) maps here without this app importing it.
"""

from dataclasses import dataclass

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"

# Twilio's numbers (https://www.twilio.com/docs/api/errors).
AUTHENTICATE = 20003
NOT_FOUND = 20404
TOO_MANY_REQUESTS = 20429
INVALID_PARAMETER = 60200
MAX_CHECK_ATTEMPTS = 60202
MAX_SEND_ATTEMPTS = 60203
DELIVERY_BLOCKED = 60410
ACCOUNT_NOT_ACTIVE = 20005
METHOD_NOT_ALLOWED = 20004
FORBIDDEN = 20403
INTERNAL = 20500
UNAVAILABLE = 20503


@dataclass(frozen=True)
class TwilioError:
    status: int
    code: int
    message: str

    def body(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": MORE_INFO.format(code=self.code),
            "status": self.status,
        }


AUTHENTICATION_ERROR = TwilioError(401, AUTHENTICATE, "Authentication Error - invalid username or password")
NOT_FOUND_ERROR = TwilioError(404, NOT_FOUND, "The requested resource was not found")
MAX_CHECK_ATTEMPTS_ERROR = TwilioError(429, MAX_CHECK_ATTEMPTS, "Max check attempts reached")
INTERNAL_ERROR = TwilioError(500, INTERNAL, "Internal server error")

# The service's error code -> (HTTP status, Twilio code, Twilio's message). None keeps the service's message.
BY_SERVICE_CODE: dict[str, tuple[int, int, str | None]] = {
    "AUTHENTICATION_FAILED": (401, AUTHENTICATE, AUTHENTICATION_ERROR.message),
    "WORKSPACE_SUSPENDED": (401, ACCOUNT_NOT_ACTIVE, "Account is not active"),
    "RATE_LIMITED": (429, TOO_MANY_REQUESTS, "Too Many Requests"),
    "WORKSPACE_QUOTA_EXCEEDED": (429, TOO_MANY_REQUESTS, None),
    "NOT_FOUND": (404, NOT_FOUND, NOT_FOUND_ERROR.message),
    # A verification that is no longer pending is, for Twilio, no longer there to cancel or resend.
    "SESSION_NOT_PENDING": (404, NOT_FOUND, NOT_FOUND_ERROR.message),
    "EXPIRED": (404, NOT_FOUND, NOT_FOUND_ERROR.message),
    "VALIDATION_ERROR": (400, INVALID_PARAMETER, None),
    "MALFORMED_JSON": (400, INVALID_PARAMETER, "The request body could not be read"),
    "DESTINATION_BLOCKED": (403, DELIVERY_BLOCKED, "Verification delivery attempt blocked"),
    "DESTINATION_RATE_LIMITED": (429, MAX_SEND_ATTEMPTS, "Max send attempts reached"),
    # Twilio counts sends per verification too (5 in 10 minutes); here the resend cooldown and cap of
    # API.md section 8 hold, and are answered as Twilio answers its own.
    "RESEND_TOO_SOON": (429, MAX_SEND_ATTEMPTS, "Max send attempts reached"),
    "RESEND_LIMIT_REACHED": (429, MAX_SEND_ATTEMPTS, "Max send attempts reached"),
    "INSUFFICIENT_BALANCE": (402, ACCOUNT_NOT_ACTIVE, None),
    "IDEMPOTENCY_KEY_REUSED": (409, INVALID_PARAMETER, None),
    "METHOD_NOT_ALLOWED": (405, METHOD_NOT_ALLOWED, "Method not allowed"),
    "UNSUPPORTED_MEDIA_TYPE": (415, INVALID_PARAMETER, "Send the parameters form-encoded"),
    "PAYLOAD_TOO_LARGE": (413, INVALID_PARAMETER, None),
    "SERVICE_UNAVAILABLE": (503, UNAVAILABLE, None),
    "HTTPS_REQUIRED": (403, FORBIDDEN, None),
}


def twilio_error(*, code: str, status: int, message: str) -> TwilioError:
    """The Twilio error for one of the service's errors; one it does not know keeps its status."""
    mapped = BY_SERVICE_CODE.get(code)
    if mapped is None:
        return TwilioError(status, INTERNAL if status >= 500 else INVALID_PARAMETER, message)
    mapped_status, twilio_code, twilio_message = mapped
    return TwilioError(mapped_status, twilio_code, twilio_message or message)
