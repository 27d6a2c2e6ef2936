"""The current request's id and log fields, readable from anywhere on the request's thread (logs, renderers).

A Celery task that a request caused runs under the same values: they travel as task headers
(zeckta.taskcontext), so one requestId finds the request, its SMS send and its webhook deliveries.
"""

from contextvars import ContextVar
from dataclasses import dataclass

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


@dataclass
class LogContext:
    """What every log line of a request or task says about it, where known. Never a secret: the workspace's
    slug, the API key's display prefix (zk_live_ + 8 characters), the SMS route's name."""

    workspace: str | None = None
    key_prefix: str | None = None
    route: str | None = None


log_context_var: ContextVar[LogContext | None] = ContextVar("log_context", default=None)


def log_context_update(
    *, workspace: str | None = None, key_prefix: str | None = None, route: str | None = None
) -> None:
    """Fills in fields of the current request's or task's log context; nothing outside one."""
    context = log_context_var.get()
    if context is None:
        return
    if workspace is not None:
        context.workspace = workspace
    if key_prefix is not None:
        context.key_prefix = key_prefix
    if route is not None:
        context.route = route
