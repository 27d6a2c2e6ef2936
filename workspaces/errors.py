"""Tenancy failures: raised by the workspace, key and billing services, answered by the API and commands alike."""

from zeckta.errors import ApplicationError, Conflict, NotFound


class WorkspaceNotFound(NotFound):
    default_message = "Workspace not found."


class WorkspaceSlugTaken(Conflict):
    code = "WORKSPACE_SLUG_TAKEN"
    default_message = "A workspace with this slug already exists."


class ApiKeyNotFound(NotFound):
    default_message = "API key not found."


class InsufficientBalance(ApplicationError):
    status_code = 402
    code = "INSUFFICIENT_BALANCE"
    default_message = "The workspace balance cannot pay for this SMS."


class LiveKeyRequired(ApplicationError):
    """A test key tried to change what live traffic depends on (API.md section 10): test mode may read the
    workspace's configuration, never alter it."""

    status_code = 403
    code = "LIVE_KEY_REQUIRED"
    default_message = "A test key cannot change live configuration: use a live (zk_live_) key."
