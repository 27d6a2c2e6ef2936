"""The statement limits of the work that is allowed to run longer than a request.

Every connection starts with DATABASE_STATEMENT_TIMEOUT_SECONDS (settings: libpq's startup `options`), which
keeps a request, an SMS send and a webhook delivery well inside gunicorn's and Celery's time limits. Two kinds
of work need more, on the connection of the process that does it, for as long as it runs:

- a task of the housekeeping queue (the beat's purges, sweeps and the traffic rollup): a purge deletes a
  retention period's worth of rows in one statement. It runs under
  DATABASE_HOUSEKEEPING_STATEMENT_TIMEOUT_SECONDS, so a purge stuck behind a lock still ends, and its worker
  slot with it;
- `manage.py migrate`: no limit at all. An index build on a large table may take longer than any number
  chosen here, and a migration cut off halfway is worse than a slow one; the operator is watching it.

The limit is raised with a session-level SET and put back with RESET, which returns to the value the
connection started with (the startup option), not to PostgreSQL's default. SMS and webhook tasks never pay
for it: nothing is sent for them. With DATABASE_STATEMENT_TIMEOUT_SECONDS=0 (PgBouncer in transaction mode,
where a session setting would stay on a server connection that other clients share) nothing is set at all.
"""

import logging
from typing import Any

from celery import signals
from django.conf import settings
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import post_migrate, pre_migrate

logger = logging.getLogger(__name__)

HOUSEKEEPING_QUEUE = "housekeeping"


def task_queue(task_name: str) -> str:
    """The queue a task is published to: its route, or the default queue (where the beat's tasks go)."""
    return settings.CELERY_TASK_ROUTES.get(task_name, {}).get("queue", settings.CELERY_TASK_DEFAULT_QUEUE)


def statement_timeout_set(connection: BaseDatabaseWrapper, *, seconds: float) -> None:
    """This session's statement limit, until `statement_timeout_reset` (0: none). PostgreSQL only, and only
    where the service sets limits per session (DATABASE_STATEMENT_TIMEOUT_SECONDS)."""
    if connection.vendor != "postgresql" or not settings.DATABASE_STATEMENT_TIMEOUT_SECONDS:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('statement_timeout', %s, false)", [str(round(seconds * 1000))])


def statement_timeout_reset(connection: BaseDatabaseWrapper) -> None:
    """Back to the limit the connection started with. A connection that is closed already has nothing to put
    back (it starts with that limit when it reopens); one that cannot take the RESET (its transaction
    failed, the server went away) is closed, so that it never serves the next task with the long limit."""
    if connection.vendor != "postgresql" or connection.connection is None:
        return
    if not settings.DATABASE_STATEMENT_TIMEOUT_SECONDS:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")
    except DatabaseError:
        logger.warning("could not put the statement timeout back; closing the connection")
        connection.close()


@signals.task_prerun.connect
def _housekeeping_limit_on(task: Any = None, **kwargs: Any) -> None:
    if task is None or task.request.is_eager or task_queue(task.name) != HOUSEKEEPING_QUEUE:
        return  # an eager task runs inside its caller's request: the request's limit stands
    statement_timeout_set(connections["default"], seconds=settings.DATABASE_HOUSEKEEPING_STATEMENT_TIMEOUT_SECONDS)
    task.request.zeckta_statement_timeout_raised = True


@signals.task_postrun.connect
def _housekeeping_limit_off(task: Any = None, **kwargs: Any) -> None:
    if task is None or not getattr(task.request, "zeckta_statement_timeout_raised", False):
        return
    task.request.zeckta_statement_timeout_raised = False
    statement_timeout_reset(connections["default"])


def _migrate_without_limit(using: str = "default", **kwargs: Any) -> None:
    connection = connections[using]
    if not getattr(connection, "zeckta_statement_timeout_lifted", False):
        statement_timeout_set(connection, seconds=0)
        connection.zeckta_statement_timeout_lifted = True  # type: ignore[attr-defined]


def _migrate_done(using: str = "default", **kwargs: Any) -> None:
    # `flush` (between transactional tests) sends post_migrate too, with no pre_migrate before it.
    connection = connections[using]
    if getattr(connection, "zeckta_statement_timeout_lifted", False):
        connection.zeckta_statement_timeout_lifted = False  # type: ignore[attr-defined]
        statement_timeout_reset(connection)


def connect_migrate_signals() -> None:
    """Called by the zeckta app's ready(). Both signals are sent once per app: the first pre_migrate lifts
    the limit, the first post_migrate (after every migration ran) puts it back."""
    pre_migrate.connect(_migrate_without_limit, dispatch_uid="zeckta.dbtimeouts.migrate_without_limit")
    post_migrate.connect(_migrate_done, dispatch_uid="zeckta.dbtimeouts.migrate_done")
