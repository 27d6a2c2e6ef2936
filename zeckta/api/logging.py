"""Log records of the service: stamped with the request's (or task's) context, written as text or JSON.

LOG_FORMAT=json (the default when DEBUG is off) writes one JSON object a line, with python-json-logger:
`time`, `level`, `logger`, `message`, and where known `requestId`, `workspace`, `keyPrefix`, `route`,
`status` (the HTTP answer a line is about) and `exc_info`. Only these: arbitrary `extra` attributes are
left out, since some hold objects whose text carries what must not be logged (django.request passes the
request, whose repr shows the query string, where a provider's receipt token may be).
"""

import logging
import re
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from zeckta.api.context import LogContext, log_context_var, request_id_var

# Raw API keys and webhook signing secrets, should one ever reach a log line: kept to what identifies them.
# (zk_live_ + 8 characters is a key's display prefix, which is not a secret.)
_SECRETS = re.compile(r"\b(zk_(?:live|test)_[A-Za-z0-9_-]{8})[A-Za-z0-9_-]+|\bwhsec_[A-Za-z0-9+/=_-]+")


def _redacted(match: re.Match[str]) -> str:
    return f"{match.group(1)}…" if match.group(1) else "whsec_…"


def redact(text: str) -> str:
    return _SECRETS.sub(_redacted, text)


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the requestId of the request or task being served ("-" outside one)
    and with its log context (workspace, key prefix, route: None where not known).

    Leaves out django.request's line for a /v1/ answer that zeckta.api.observe logged already, with its code.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        context = log_context_var.get()
        request = getattr(record, "request", None)
        if request_id is None:
            # django.request logs the response after the middleware has returned; it passes the request.
            request_id = getattr(request, "request_id", None)
            context = getattr(request, "log_context", None)
        record.request_id = request_id or "-"
        context = context or LogContext()
        for name in ("workspace", "key_prefix", "route"):
            if not hasattr(record, name):
                setattr(record, name, getattr(context, name))
        return not (record.name == "django.request" and getattr(request, "error_logged", False))


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line, with the fields named in the module's docstring and nothing else."""

    # LogRecord attribute -> JSON field, written when the record has a value for it.
    CONTEXT_FIELDS = {
        "request_id": "requestId",
        "workspace": "workspace",
        "key_prefix": "keyPrefix",
        "route": "route",
        "status_code": "status",
    }

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = redact(record.message)
        for attribute, field in self.CONTEXT_FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None and value != "-":
                log_data[field] = value
        for key, value in message_dict.items():  # logger.info({...}): fields the caller chose to log
            log_data.setdefault(key, redact(value) if isinstance(value, str) else value)
