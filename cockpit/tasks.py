"""Celery tasks of the cockpit: thin, named for the beat schedule (settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task
from django.conf import settings

from cockpit.services import traffic_rollup_refresh

TRAFFIC_ROLLUP_REFRESH_TASK = "cockpit.tasks.refresh_traffic_rollup"


@shared_task(name=TRAFFIC_ROLLUP_REFRESH_TASK, ignore_result=True)
def traffic_rollup_refresh_task() -> int:
    """Every minute: the dashboard's hours that may still change, and the suspected-pumping list. A backfill
    longer than COCKPIT_ROLLUP_RUN_SECONDS goes on at the next minute."""
    return traffic_rollup_refresh(budget_seconds=settings.COCKPIT_ROLLUP_RUN_SECONDS).rows
