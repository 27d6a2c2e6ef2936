"""Refusals of the relay's doors. The Supabase hook renders them in Supabase's shape
(`{"error": {"http_code", "message"}}`), with the status each carries here."""

from zeckta.errors import ApplicationError, NotFound, ValidationFailed


class SupabaseHookNotFound(NotFound):
    default_message = "Supabase hook not found."


class SupabaseHookLimitReached(ValidationFailed):
    def __init__(self, limit: int) -> None:
        message = f"A workspace has at most {limit} Supabase hooks: delete one before adding another."
        super().__init__(message, errors={"nonFieldErrors": [message]})


class HookSignatureInvalid(ApplicationError):
    status_code = 401
    code = "AUTHENTICATION_FAILED"
    default_message = "The webhook signature does not verify (wrong secret, or a timestamp more than 5 minutes off)."


class HookPayloadInvalid(ApplicationError):
    code = "VALIDATION_ERROR"
    default_message = "The hook's payload is invalid."


class HookWorkspaceSuspended(ApplicationError):
    status_code = 403
    code = "WORKSPACE_SUSPENDED"
    default_message = "This workspace is suspended."


class NoSenderName(ApplicationError):
    """Nothing to send from: the workspace has no approved sender name yet."""

    code = "VALIDATION_ERROR"
    default_message = "The workspace has no approved sender name to send from."
