"""The current request's id, readable from anywhere on the request's thread (logs, renderers)."""

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
