from zeckta.api.errors import ApplicationError


class OtpSessionNotFound(ApplicationError):
    status_code = 404
    code = "NOT_FOUND"
    default_message = "OTP session not found."


class DestinationRateLimited(ApplicationError):
    status_code = 429
    code = "DESTINATION_RATE_LIMITED"
    default_message = "Too many OTP SMS to this destination. Retry later."

    def __init__(self, message: str | None = None, *, retry_after_seconds: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(retry_after_seconds, 1))})
