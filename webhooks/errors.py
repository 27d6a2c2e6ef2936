"""Webhook failures, answered by the API in the envelope (and by the admin as form errors)."""

from zeckta.errors import NotFound, ValidationFailed


class WebhookEndpointNotFound(NotFound):
    """Missing and another workspace's endpoint answer alike: existence is not leaked."""

    default_message = "Webhook endpoint not found."


class WebhookEndpointLimitReached(ValidationFailed):
    def __init__(self, limit: int) -> None:
        message = f"A workspace has at most {limit} webhook endpoints: delete one before adding another."
        super().__init__(message, errors={"nonFieldErrors": [message]})
