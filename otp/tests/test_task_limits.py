"""Every Celery task has a hard time limit and a soft one before it, sized above its longest legitimate run
and, for the tasks that claim an outbox row, below the lease after which the row is handed out again."""

import subprocess
import sys

import pytest
from django.conf import settings

from senders.gateways.transport import ProviderGateway
from zeckta.celery import app as celery_app

SMS_TASK = "otp.tasks.send_sms"
WEBHOOK_TASK = "webhooks.tasks.deliver"


@pytest.fixture(scope="module")
def tasks() -> dict:
    celery_app.loader.import_default_modules()
    return {name: task for name, task in celery_app.tasks.items() if not name.startswith("celery.")}


def test_every_task_has_a_soft_and_a_hard_time_limit(tasks):
    assert {SMS_TASK, WEBHOOK_TASK, "otp.tasks.purge_old_sessions", "cockpit.tasks.refresh_traffic_rollup"} <= set(
        tasks
    )
    for name, task in tasks.items():
        assert task.time_limit and task.soft_time_limit, name
        assert 0 < task.soft_time_limit < task.time_limit, name


def test_the_sms_and_webhook_tasks_are_limited_between_their_calls_deadline_and_their_lease(tasks):
    sms, webhook = tasks[SMS_TASK], tasks[WEBHOOK_TASK]
    # Above the one outbound call each makes, which its own total deadline ends first (with room for
    # the statements around it and a slow resolver)...
    longest_provider_call = max(settings.SMS_HTTP_TIMEOUT, ProviderGateway.default_timeout)
    assert sms.soft_time_limit >= 3 * longest_provider_call
    assert webhook.soft_time_limit >= 3 * settings.WEBHOOK_TIMEOUT_SECONDS
    # ...and below the lease: a task killed at its limit is gone before the sweeper hands its row out again.
    assert sms.time_limit < settings.SMS_PROCESSING_LEASE_SECONDS
    assert webhook.time_limit < settings.WEBHOOK_PROCESSING_LEASE_SECONDS
    # The beat's housekeeping may run for minutes: it gets the default, far longer.
    assert tasks["otp.tasks.purge_old_sessions"].time_limit == settings.CELERY_TASK_TIME_LIMIT >= 300


@pytest.mark.parametrize(
    "env, problem",
    [
        (
            {"SMS_TASK_TIME_LIMIT_SECONDS": "120", "SMS_PROCESSING_LEASE_SECONDS": "120"},
            "SMS_TASK_TIME_LIMIT_SECONDS (120 s) must be below SMS_PROCESSING_LEASE_SECONDS (120 s)",
        ),
        (
            {"WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS": "30"},
            "WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS (30 s) must be below WEBHOOK_TASK_TIME_LIMIT_SECONDS (30 s)",
        ),
    ],
)
def test_limits_that_would_not_hold_are_refused_at_start_up(env, problem):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={"DJANGO_SETTINGS_MODULE": "zeckta.settings", "DEBUG": "True", "PATH": "/usr/bin:/bin", **env},
    )
    assert result.returncode != 0
    assert problem in result.stderr
