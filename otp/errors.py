"""OTP failures that end a request with an error. A failed verify is not one: it is an outcome
(`otp.services.VerifyOutcome`), returned and rendered, because its attempt must stay committed."""

from zeckta.errors import ApplicationError, Conflict, Gone, NotFound, TooManyRequests


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
