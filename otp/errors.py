"""OTP failures that end a request with an error. A failed verify is not one: it is an outcome
(`otp.services.VerifyOutcome`), returned and rendered, because its attempt must stay committed."""

from zeckta.errors import ApplicationError, Conflict, Gone, NotFound, TooManyRequests


class RelayDisabled(ApplicationError):
    """The relay (API.md section 14) is off until staff turn it on for the workspace: it sends any text,
    so it is not for every client by default."""

    status_code = 403
    code = "RELAY_DISABLED"
    default_message = "The SMS relay is not enabled for this workspace. Ask the operator to enable it."


class RelayedSmsNotFound(NotFound):
    default_message = "SMS not found."


class OtpSessionNotFound(NotFound):
    default_message = "OTP session not found."


class DestinationRateLimited(TooManyRequests):
    code = "DESTINATION_RATE_LIMITED"
    default_message = "Too many OTP SMS to this destination. Retry later."


class WorkspaceQuotaExceeded(TooManyRequests):
    code = "WORKSPACE_QUOTA_EXCEEDED"
    default_message = "This workspace has sent its OTP SMS allowance for today (UTC). Retry tomorrow."


class SessionNotPending(Conflict):
    code = "SESSION_NOT_PENDING"
    default_message = "This OTP session is no longer pending."


class ResendLimitReached(Conflict):
    code = "RESEND_LIMIT_REACHED"
    default_message = "This OTP session has been resent the maximum number of times."


class ResendTooSoon(TooManyRequests):
    code = "RESEND_TOO_SOON"
    default_message = "Too soon to resend this OTP. Retry later."


class OtpExpired(Gone):
    code = "EXPIRED"
    default_message = "OTP has expired."


class IdempotencyKeyReused(Conflict):
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This Idempotency-Key was already used with a different request body."


class ReceiptForbidden(ApplicationError):
    """A delivery receipt that failed its provider's authentication: it changes nothing."""

    status_code = 403
    code = "FORBIDDEN"
    default_message = "This receipt failed the route's authentication."


class ReceiptTooLarge(ApplicationError):
    """One receipt request carrying more receipts than RECEIPTS_PER_REQUEST_MAX: nothing of it is applied."""

    status_code = 413
    code = "PAYLOAD_TOO_LARGE"
    default_message = "This receipt request carries too many receipts."
