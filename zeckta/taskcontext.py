"""Celery processes: the request's context carried into the tasks it causes, the service's log format, and the
worker's metrics directory. Connected in every process (zeckta.celery imports this module).

A task published while a request is served carries its requestId, workspace slug and key prefix as message
headers (`before_task_publish`, whatever code publishes: the SMS send, a webhook delivery, a retry of
either); the worker restores them around the task (`task_prerun` / `task_postrun`), so every line the
task logs names the request that caused it. A task the beat publishes (a sweep) has none.
"""

import logging
import os
from typing import Any

from celery import signals

from zeckta import multiprocess
from zeckta.api.context import LogContext, log_context_var, request_id_var

HEADER_REQUEST_ID = "zeckta_request_id"
HEADER_WORKSPACE = "zeckta_workspace"
HEADER_KEY_PREFIX = "zeckta_key_prefix"


@signals.before_task_publish.connect
def _carry_request_context(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    request_id = request_id_var.get()
    if headers is None or request_id is None:
        return
    headers[HEADER_REQUEST_ID] = request_id
    context = log_context_var.get()
    if context is not None:
        headers[HEADER_WORKSPACE] = context.workspace
        headers[HEADER_KEY_PREFIX] = context.key_prefix


@signals.task_prerun.connect
def _restore_request_context(task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    if request is None or request.is_eager:
        return  # an eager task runs inside its publisher, whose context is already there
    context = LogContext(workspace=request.get(HEADER_WORKSPACE), key_prefix=request.get(HEADER_KEY_PREFIX))
    request.zeckta_context_tokens = (request_id_var.set(request.get(HEADER_REQUEST_ID)), log_context_var.set(context))


@signals.task_postrun.connect
def _end_request_context(task: Any = None, **kwargs: Any) -> None:
    tokens = getattr(getattr(task, "request", None), "zeckta_context_tokens", None)
    if tokens is None:
        return
    request_id_token, context_token = tokens
    log_context_var.reset(context_token)
    request_id_var.reset(request_id_token)
    task.request.zeckta_context_tokens = None


@signals.setup_logging.connect
def _service_logging(loglevel: int | str | None = None, **kwargs: Any) -> None:
    """The service's LOGGING (LOG_FORMAT, the requestId filter) in Celery processes, not Celery's own format."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.celeryd_init.connect
def _metrics_group(**kwargs: Any) -> None:
    """A worker starts a metrics process group before it loads any task or forks its pool."""
    multiprocess.group_start("worker")


@signals.worker_process_shutdown.connect
def _metrics_process_exit(**kwargs: Any) -> None:
    multiprocess.process_exited(os.getpid())
