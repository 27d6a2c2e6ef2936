import logging

from zeckta.api.context import request_id_var


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the requestId of the request being served ("-" outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True
