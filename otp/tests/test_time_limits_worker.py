"""Task time limits in a real prefork worker (the pool's parent enforces them): an SMS or webhook task past
its soft limit unwinds, records the attempt as a time-out and is retried by the outbox's own rules.

The hard limit's kill leaves the state test_faults' SIGKILLed worker leaves (the row claimed, its lease
running): the sweeper sends it again, once, with the same reference. It cannot be provoked here on its
own: the pool starts the hard limit's clock when the soft limit fires, and every soft limit ends these
tasks at once. The limits are shrunk to seconds through the environment; the calls they cut would
otherwise hang far longer (a held provider, a trickling receiver).
"""

import threading

import pytest
from django.db import transaction
from django.utils import timezone

from otp.delivery import SMS_DRAIN_TASK
from otp.models import SmsAttempt, SmsMessage
from otp.tests.helpers import request_otp
from senders.tests.fake_gateway import Answer
from webhooks.delivery import WEBHOOK_DELIVER_TASK
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create, webhook_event_record
from webhooks.tests.factories import SESSION_VIEW
from zeckta.celery import app as celery_app
from zeckta.testing import DEST, wait_for
from zeckta.tests.trickle import TrickleServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

WAIT_SECONDS = 30  # an upper bound for polling, not a timing assertion


def limited(monkeypatch, task_name: str, *, soft: int, hard: int, prefix: str) -> dict[str, str]:
    """Shrinks a task's limits where they count: Celery puts them in each message, from the publisher's
    task (this process: the API and the sweepers publish); the worker's environment says the same."""
    task = celery_app.tasks[task_name]
    monkeypatch.setattr(task, "soft_time_limit", soft)
    monkeypatch.setattr(task, "time_limit", hard)
    # The options a task publishes with are cached on first use: computed afresh here, and the cache put
    # back as it was afterwards, so that no later test's messages carry these limits.
    monkeypatch.setattr(task, "_exec_options", None)
    return {f"{prefix}_TASK_SOFT_TIME_LIMIT_SECONDS": str(soft), f"{prefix}_TASK_TIME_LIMIT_SECONDS": str(hard)}


def test_an_sms_task_past_its_soft_limit_records_a_time_out_and_retries_at_once(
    fake_gateway, broker_queue, start_worker, api, monkeypatch
):
    hold = threading.Event()
    fake_gateway.answer(Answer(hold=hold))  # the provider hangs on the first call
    limits = limited(monkeypatch, SMS_DRAIN_TASK, soft=1, hard=20, prefix="SMS")
    worker = start_worker(gateway=fake_gateway, pool="prefork", SMS_HTTP_TIMEOUT="60", **limits)
    try:
        assert request_otp(api, DEST).status_code == 200
        sent = wait_for(lambda: SmsMessage.objects.filter(status="sent").exists(), timeout=WAIT_SECONDS)
    finally:
        hold.set()
    assert sent, worker.output()
    worker.stop()

    message = SmsMessage.objects.get()
    assert (message.status, message.attempts, fake_gateway.calls) == ("sent", 2, 2)
    first, second = SmsAttempt.objects.filter(message=message).order_by("started_at", "pk")
    assert first.error == "the send ran out of time (the task's soft time limit)"
    assert second.status == "accepted"
    assert "Hard time limit" not in worker.output()


def test_a_webhook_task_past_its_soft_limit_records_a_failed_attempt(
    fake_gateway, broker_queue, start_worker, workspace, settings, monkeypatch
):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = TrickleServer(interval=0.3).start()  # and a call deadline far away: the soft limit cuts first
    try:
        endpoint = webhook_endpoint_create(workspace=workspace, url=receiver.url, events=["otp.approved"]).endpoint
        limits = limited(monkeypatch, WEBHOOK_DELIVER_TASK, soft=1, hard=20, prefix="WEBHOOK")
        worker = start_worker(
            gateway=fake_gateway,
            pool="prefork",
            WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
            WEBHOOK_TIMEOUT_SECONDS="60",
            **limits,
        )
        with transaction.atomic():
            webhook_event_record(
                workspace_id=workspace.pk, event_type="otp.approved", at=timezone.now(), data=SESSION_VIEW
            )
        tried = wait_for(
            lambda: WebhookDelivery.objects.filter(attempts=1, status="pending").exists(), timeout=WAIT_SECONDS
        )
        assert tried, worker.output()
        worker.stop()
    finally:
        receiver.stop()

    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.last_error == "the attempt ran out of time (the task's soft time limit)"
    assert delivery.next_attempt_at > delivery.updated_at and delivery.last_status_code is None
    assert "Hard time limit" not in worker.output()
