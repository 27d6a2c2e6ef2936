"""Celery tasks. They take only ids; each runs one function of `webhooks.delivery`."""

from celery import shared_task

from webhooks.delivery import (
    WEBHOOK_DELIVER_TASK,
    WEBHOOK_PURGE_TASK,
    WEBHOOK_REQUEUE_DUE_TASK,
    webhook_deliveries_purge,
    webhook_deliveries_requeue,
    webhook_drain,
)


# No Celery retries: the row holds the schedule (next_attempt_at) and the outcome of every attempt. The task
# attempts every delivery that is due, many calls in flight at once (webhook_drain). A retry's or the
# sweeper's task names a delivery it is for (and tasks published before the drain named one each); the
# nudge's task names none.
@shared_task(name=WEBHOOK_DELIVER_TASK, acks_late=True, ignore_result=True)
def webhook_deliver_task(delivery_id: int | None = None) -> int:
    return webhook_drain()


@shared_task(name=WEBHOOK_REQUEUE_DUE_TASK, ignore_result=True)
def webhook_deliveries_requeue_task() -> int:
    """Every 30 s (beat): deliveries due that no task will take."""
    return webhook_deliveries_requeue()


@shared_task(name=WEBHOOK_PURGE_TASK, ignore_result=True)
def webhook_deliveries_purge_task() -> int:
    """Hourly (beat): finished deliveries past WEBHOOK_RETENTION_DAYS."""
    return webhook_deliveries_purge()
