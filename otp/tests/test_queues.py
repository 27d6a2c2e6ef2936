"""SMS sends, webhook deliveries and housekeeping travel on three Celery queues (settings.CELERY_TASK_ROUTES),
so that at scale each has workers of its own and a backlog of one never delays another."""

import json
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from otp.delivery import SMS_DELIVER_TASK, SMS_DRAIN_TASK, SMS_QUEUE, sms_enqueue
from otp.tests.helpers import request_otp
from webhooks.delivery import WEBHOOK_DELIVER_TASK, WEBHOOKS_QUEUE, webhook_deliveries_enqueue
from zeckta.celery import app as celery_app
from zeckta.testing import DEST

HOUSEKEEPING_QUEUE = "housekeeping"


def routed_queue(task_name: str) -> str:
    return celery_app.amqp.router.route({}, task_name)["queue"].name


def queued_task_names(broker, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["task"] for raw in broker.lrange(queue, 0, -1)]


def test_each_kind_of_task_is_routed_to_its_own_queue():
    assert routed_queue(SMS_DELIVER_TASK) == SMS_QUEUE == "sms"
    assert routed_queue(SMS_DRAIN_TASK) == SMS_QUEUE
    assert routed_queue(WEBHOOK_DELIVER_TASK) == WEBHOOKS_QUEUE == "webhooks"
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert routed_queue(entry["task"]) == HOUSEKEEPING_QUEUE, entry


def test_a_worker_started_without_q_consumes_every_queue():
    """What `celery -A zeckta worker` listens to when no -Q is given: make run and the tests rely on it."""
    assert set(celery_app.amqp.queues) == {SMS_QUEUE, WEBHOOKS_QUEUE, HOUSEKEEPING_QUEUE}


@pytest.mark.django_db(transaction=True)
def test_the_publishers_push_onto_the_queue_of_their_task(api, broker_queue):
    assert request_otp(api, DEST).status_code == 200  # a drain asked for on commit, as in production
    webhook_deliveries_enqueue(delivery_ids=[1])
    sms_enqueue(message_id=2, expires_at=timezone.now() + timedelta(minutes=5))
    beat_entry = settings.CELERY_BEAT_SCHEDULE["purge-old-sessions"]
    celery_app.tasks[beat_entry["task"]].apply_async()  # what beat does with an entry

    assert sorted(queued_task_names(broker_queue, SMS_QUEUE)) == sorted([SMS_DRAIN_TASK, SMS_DELIVER_TASK])
    assert queued_task_names(broker_queue, WEBHOOKS_QUEUE) == [WEBHOOK_DELIVER_TASK]
    assert queued_task_names(broker_queue, HOUSEKEEPING_QUEUE) == [beat_entry["task"]]
    assert broker_queue.llen("celery") == 0  # Celery's default queue is not used at all


def _queues_of(command: str) -> set[str]:
    [queues] = re.findall(r"--queues[= ](\S+)", command)
    return set(queues.split(","))


@pytest.mark.parametrize("unit_queues", ["procfile", "systemd"])
def test_the_default_layout_runs_webhooks_apart_from_sms_and_consumes_every_queue(unit_queues):
    """However slow the workspaces' receivers, they hold slots of the webhooks worker only: the SMS worker
    never runs a webhook delivery."""
    if unit_queues == "procfile":
        lines = (settings.BASE_DIR / "Procfile").read_text().splitlines()
        commands = dict(line.split(":", 1) for line in lines if " worker " in line and not line.startswith("#"))
        sms_worker, webhooks_worker = commands["worker"], commands["webhooks"]
    else:
        units = settings.BASE_DIR / "deploy" / "systemd"
        sms_worker = (units / "zeckta-worker.service").read_text()
        webhooks_worker = (units / "zeckta-worker@.service").read_text().replace("%i", WEBHOOKS_QUEUE)
        commands = {"worker": sms_worker, "webhooks": webhooks_worker}
    assert _queues_of(sms_worker) == {SMS_QUEUE, HOUSEKEEPING_QUEUE}
    assert _queues_of(webhooks_worker) == {WEBHOOKS_QUEUE}
    consumed = [queue for command in commands.values() for queue in _queues_of(command)]
    assert sorted(consumed) == sorted(settings.CELERY_TASK_QUEUES)  # each queue, by one of them
