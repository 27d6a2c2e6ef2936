"""No wait on PostgreSQL outlasts gunicorn's worker timeout (30 s): every connection starts with a connect
timeout and a statement timeout (settings), housekeeping tasks run under a longer limit of their own and
`migrate` under none (zeckta.dbtimeouts). What still reaches the worker timeout is answered in the envelope
(zeckta.api.middleware.envelope_on_worker_abort; with real gunicorn in otp/tests/test_hung_database.py)."""

import json
import os
import subprocess
import sys

import pytest
from celery import signals
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models.signals import pre_migrate

from zeckta.api.middleware import ENVIRON_REQUEST_ID, envelope_on_worker_abort
from zeckta.celery import app as celery_app

pytestmark = pytest.mark.django_db

SCRIPT = r"""
import json, os, socket
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    shown = cursor.fetchone()[0]
tcp = socket.socket(fileno=os.dup(connection.connection.pgconn.socket))
keepalive = [tcp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)] + [
    tcp.getsockopt(socket.IPPROTO_TCP, option)
    for option in (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT, socket.TCP_USER_TIMEOUT)]
print(json.dumps({"options": connection.settings_dict["OPTIONS"], "statement_timeout": shown, "tcp": keepalive}))
"""


def run(database_url: str | None = None, **env: str) -> dict:
    db = settings.DATABASES["default"]
    url = database_url or f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PYTHONPATH": str(settings.BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "zeckta.settings_test",
            "DATABASE_URL": url,
            **env,
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def show_statement_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return cursor.fetchone()[0]


def test_connections_start_with_a_connect_and_a_statement_timeout_below_gunicorns():
    out = run()
    assert out["options"]["connect_timeout"] == 5
    assert out["statement_timeout"] == "10s"
    # The socket itself: keepalive on, probes after 5 s of silence, every 2 s, 3 of them; 10,000 ms unacked.
    assert out["tcp"] == [1, 5, 2, 3, 10_000]


def test_both_are_set_by_environment_variables_in_seconds():
    out = run(DATABASE_CONNECT_TIMEOUT_SECONDS="3", DATABASE_STATEMENT_TIMEOUT_SECONDS="2.5")
    assert (out["options"]["connect_timeout"], out["statement_timeout"]) == (3, "2500ms")
    off = run(DATABASE_STATEMENT_TIMEOUT_SECONDS="0")  # none sent: the server's (or the role's) own applies
    assert "options" not in off["options"] and off["statement_timeout"] == "0"
    assert run(DATABASE_CONNECT_TIMEOUT_SECONDS="1")["options"]["connect_timeout"] == 2  # libpq's least


def test_options_of_the_database_url_are_kept_beside_the_statement_timeout():
    db = settings.DATABASES["default"]
    url = (
        f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        "?connect_timeout=7&options=-c%20lock_timeout%3D1000"
    )
    out = run(url)
    assert out["options"]["connect_timeout"] == 7  # the URL's own value wins
    assert out["options"]["options"] == "-c lock_timeout=1000 -c statement_timeout=10000"
    assert out["statement_timeout"] == "10s"


def _run_signals(task_name: str) -> tuple[str, str]:
    """The statement timeout inside a task of this name, as a worker runs it (not eagerly), and after it."""
    task = celery_app.tasks[task_name]
    task.push_request(is_eager=False, id="a-task")
    try:
        signals.task_prerun.send(sender=task, task_id="a-task", task=task, args=(), kwargs={})
        during = show_statement_timeout()
        signals.task_postrun.send(
            sender=task, task_id="a-task", task=task, args=(), kwargs={}, retval=0, state="SUCCESS"
        )
        return during, show_statement_timeout()
    finally:
        task.pop_request()


def test_housekeeping_tasks_run_under_their_own_longer_limit_then_put_it_back():
    purge = "otp.tasks.purge_old_sessions"
    assert settings.CELERY_BEAT_SCHEDULE["purge-old-sessions"]["task"] == purge
    assert _run_signals(purge) == ("10min", "10s")


def test_with_the_limit_off_no_task_sets_one(settings):
    settings.DATABASE_STATEMENT_TIMEOUT_SECONDS = 0  # PgBouncer in transaction mode: no session settings
    assert _run_signals("otp.tasks.purge_old_sessions") == ("10s", "10s")  # this connection's own, untouched


@pytest.mark.parametrize("task_name", ["otp.tasks.send_sms", "webhooks.tasks.deliver"])
def test_sms_and_webhook_tasks_keep_the_request_limit(task_name):
    assert _run_signals(task_name) == ("10s", "10s")


def test_migrate_runs_without_a_statement_limit_and_puts_it_back():
    seen: list[str] = []

    def look(**kwargs) -> None:
        seen.append(show_statement_timeout())

    pre_migrate.connect(look, dispatch_uid="test-look")  # after zeckta's own receiver, connected in ready()
    try:
        call_command("migrate", verbosity=0)
    finally:
        pre_migrate.disconnect(dispatch_uid="test-look")
    assert seen and set(seen) == {"0"}
    assert show_statement_timeout() == "10s"


def test_a_worker_abort_outside_v1_is_left_to_gunicorn():
    def aborted(environ, start_response):
        raise SystemExit(1)  # what gunicorn's SIGABRT handler raises in the waiting worker

    served = envelope_on_worker_abort(aborted)
    answered: list[str] = []
    body = served(
        {"PATH_INFO": "/v1/messaging/otp/request", "REQUEST_METHOD": "POST", ENVIRON_REQUEST_ID: "r-1"},
        lambda status, headers, exc_info=None: answered.append(status),
    )
    assert answered == ["503 Service Unavailable"]
    assert json.loads(b"".join(body))["requestId"] == "r-1"
    with pytest.raises(SystemExit):
        served({"PATH_INFO": "/admin/", "REQUEST_METHOD": "GET"}, lambda *args: None)
