"""Celery tasks. They take only ids: the code travels in no task argument and no broker message."""

import random

from celery import shared_task
from django.conf import settings


@shared_task(bind=True, max_retries=None, acks_late=True, ignore_result=True)
def send_sms(self, message_id: int) -> str:
    from otp.services import SmsRetryLater, sms_deliver

    try:
        return sms_deliver(message_id=message_id)
    except SmsRetryLater as retry:
        # Jitter (between half and all of the backoff): retries of many messages after one gateway outage
        # do not arrive in step.
        countdown = random.uniform(retry.countdown / 2, retry.countdown)
        raise self.retry(countdown=countdown, max_retries=settings.SMS_MAX_SEND_ATTEMPTS) from None


@shared_task(ignore_result=True)
def requeue_stale_sms() -> int:
    from otp.services import sms_requeue_stale

    return sms_requeue_stale()


@shared_task(ignore_result=True)
def purge_old_sessions() -> int:
    """Hourly: sessions past their retention, and idempotency records past their 24 hours."""
    from otp.idempotency import idempotency_records_purge
    from otp.services import otp_sessions_purge

    return otp_sessions_purge() + idempotency_records_purge()
