import logging

from zeckta.api.context import request_id_var


class RequestIdFilter(logging.Filter):
    """Stamps every log record with the requestId of the request being served ("-" outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is None:
            # django.request logs the response after the middleware has returned; it passes the request.
            request_id = getattr(getattr(record, "request", None), "request_id", None)
        record.request_id = request_id or "-"
        return True
