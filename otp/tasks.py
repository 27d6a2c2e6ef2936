"""Celery tasks. They take only ids: the code travels in no task argument and no broker message.

Each task is named after the service it runs, plus `_task`; its registered `name=` is the one the
broker and the beat schedule hold (`otp.delivery`'s constants), so renaming Python code never strands a
queued task.
"""

import random

from celery import shared_task
from django.utils import timezone

from fraud.guard import blocks_mirror
from fraud.services import fraud_blocks_purge
from otp.delivery import (
    INBOX_PURGE_TASK,
    OTP_SESSIONS_PURGE_TASK,
    SMS_DELIVER_TASK,
    SMS_DRAIN_TASK,
    SMS_REQUEUE_STALE_TASK,
    SmsRetryLater,
    sms_deliver,
    sms_drain,
    sms_requeue_stale,
)
from otp.expiry import otp_partitions_ensure, otp_sessions_expire, otp_sessions_purge
from otp.fallback import fallbacks_run_due, otp_fall_back
from otp.fallback_trigger import FALLBACK_TASK, FALLBACKS_DUE_TASK
from otp.fraudrules import fraud_rules_paced_run
from otp.idempotency import idempotency_records_purge
from otp.testmode import inbox_purge

OTP_SESSIONS_EXPIRE_TASK = "otp.tasks.expire_sessions"
OTP_PARTITIONS_ENSURE_TASK = "otp.tasks.create_partitions"
FRAUD_RULES_TASK = "otp.tasks.fraud_rules"
FRAUD_BLOCKS_MIRROR_TASK = "otp.tasks.fraud_blocks_mirror"


@shared_task(bind=True, name=SMS_DELIVER_TASK, max_retries=None, acks_late=True, ignore_result=True)
def sms_deliver_task(self, message_id: int) -> str:
    try:
        return sms_deliver(message_id=message_id)
    except SmsRetryLater as retry:
        # Jitter (between half and all of the backoff): retries of many messages after one gateway outage
        # do not arrive in step.
        countdown = random.uniform(retry.countdown / 2, retry.countdown) if retry.jitter else retry.countdown
        # No retry ceiling here: the outbox row holds the budget (attempts per route, routes to try).
        raise self.retry(countdown=countdown, max_retries=None) from None


# Takes no argument: it sends whatever is due. acks_late: a drain lost with its worker is run again (the rows
# it had claimed wait for their lease either way).
@shared_task(name=SMS_DRAIN_TASK, acks_late=True, ignore_result=True)
def sms_drain_task() -> int:
    return sms_drain().sent


@shared_task(name=SMS_REQUEUE_STALE_TASK, ignore_result=True)
def sms_requeue_stale_task() -> int:
    return sms_requeue_stale()


@shared_task(name=FALLBACK_TASK, acks_late=True, ignore_result=True)
def otp_fall_back_task(session_id: int) -> bool:
    """At once when a send failed for good: the session's next channel (otp.fallback)."""
    return otp_fall_back(session_id=session_id)


@shared_task(name=FALLBACKS_DUE_TASK, ignore_result=True)
def fallbacks_run_due_task() -> int:
    """Every OTP_FALLBACK_SCAN_SECONDS: the sessions whose fallback is due (otp.fallback)."""
    return fallbacks_run_due()


@shared_task(name=OTP_SESSIONS_EXPIRE_TASK, ignore_result=True)
def otp_sessions_expire_task() -> int:
    """Every 30 s: pending sessions past their validity become EXPIRED and are reported (otp.expired)."""
    return otp_sessions_expire()


@shared_task(name=OTP_SESSIONS_PURGE_TASK, ignore_result=True)
def otp_sessions_purge_task() -> int:
    """Hourly: sessions past their retention, idempotency records past their 24 hours, and the fraud guard's
    blocks past theirs (FRAUD_BLOCK_RETENTION_DAYS after their end)."""
    return otp_sessions_purge() + idempotency_records_purge() + fraud_blocks_purge()


@shared_task(name=OTP_PARTITIONS_ENSURE_TASK, ignore_result=True)
def otp_partitions_ensure_task() -> int:
    """Hourly: the daily partitions of the days ahead (PostgreSQL, otp.partitions); 0 when all exist."""
    return otp_partitions_ensure()


@shared_task(name=INBOX_PURGE_TASK, ignore_result=True)
def inbox_purge_task() -> int:
    """Every 15 minutes: test-mode SMS past their 24 hours (they hold readable codes)."""
    return inbox_purge()


@shared_task(name=FRAUD_RULES_TASK, ignore_result=True)
def fraud_rules_task() -> int | None:
    """Every FRAUD_RULES_INTERVAL_SECONDS: the conversion rules and the country history (otp.fraudrules), held
    back after a slow run (None)."""
    return fraud_rules_paced_run(now=timezone.now())


@shared_task(name=FRAUD_BLOCKS_MIRROR_TASK, ignore_result=True)
def fraud_blocks_mirror_task() -> int:
    """Every FRAUD_MIRROR_INTERVAL_SECONDS: Redis's copy of the active blocks, rewritten from the database."""
    return blocks_mirror(now=timezone.now())
