"""The trigger of a channel fallback (otp.fallback), apart from it: delivery and receipts call it when a send
fails for good, and otp.fallback itself sits above otp.services, which imports delivery."""

import logging
from datetime import datetime
from functools import partial

from django.db import transaction
from django.db.models import Exists, OuterRef

from otp.models import OtpSession, SmsMessage
from zeckta.celery import app as celery_app

logger = logging.getLogger(__name__)

# Registered task names (otp.tasks), as the broker and the beat schedule hold them.
FALLBACK_TASK = "otp.tasks.fall_back"
FALLBACKS_DUE_TASK = "otp.tasks.fall_back_due_sessions"


def fallback_now(*, session_id: int, message_id: int, now: datetime) -> None:
    """A send failed for good: its session falls back at once, if that send is still its latest and it has
    a fallback pending. One conditional UPDATE, in the caller's transaction; the fallback is enqueued once
    that commits (and found by the next scan if the publish is lost)."""
    newer = SmsMessage.objects.filter(session_id=OuterRef("pk"), pk__gt=message_id)
    brought_forward = (
        OtpSession.objects.filter(pk=session_id, status=OtpSession.Status.PENDING, fallback_at__gt=now)
        .exclude(Exists(newer))
        .update(fallback_at=now)
    )
    if brought_forward:
        transaction.on_commit(partial(fallback_enqueue, session_id=session_id))


def fallback_enqueue(*, session_id: int) -> None:
    """Publishes the fallback of one session; never raises (the scan finds it otherwise)."""
    try:
        celery_app.tasks[FALLBACK_TASK].apply_async(args=[session_id])
    except Exception:
        logger.warning(
            "could not publish the fallback of session %s; the next scan takes it", session_id, exc_info=True
        )
