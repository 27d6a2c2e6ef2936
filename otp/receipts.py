"""Delivery receipts: what a provider says became of an SMS, applied to the attempt it names.

Idempotent and never backwards: the four final statuses (delivered, undeliverable, rejected, expired)
are final, so a duplicate receipt or a late `sent` changes nothing. A receipt names its route and the
provider's message id; an SMS sent again through a second route has a second attempt, and a receipt for
the first changes that attempt only. A receipt for an id no attempt carries yet (the provider called back
before the worker committed the send) waits as an EarlyReceipt until that send commits.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from otp.events import otp_event_emit, otp_sms_event_type
from otp.fallback_trigger import fallback_now
from otp.models import EarlyReceipt, SmsAttempt, SmsMessage
from senders.gateways import FINAL_RECEIPT_STATUSES, RECEIPT_SENT, Receipt
from zeckta import metrics
from zeckta.db import advisory_xact_lock

logger = logging.getLogger(__name__)

# What one receipt request may make the service do. A provider reports each message once or a few times
# (Infobip may batch the reports of a moment in one body), and the service sends one SMS per call: a
# request carrying more is not a provider's. A larger one is refused whole (413): each receipt costs a
# transaction and a lock, and a 64 KiB body holds about a thousand.
RECEIPTS_PER_REQUEST_MAX = 100
# Receipts for ids no attempt carries yet are kept as EarlyReceipt rows; one request may add this many.
# Only a send still committing its answer has such an id, so a real report names one or two: a body full
# of made-up ids (its token is enough to send one) must not fill the table. The rest are logged, dropped.
EARLY_RECEIPTS_PER_REQUEST_MAX = 10


def receipts_apply(*, route_key: str, receipts: list[Receipt]) -> int:
    """Applies each receipt in its own transaction; returns how many changed an attempt."""
    changed, early_left = 0, EARLY_RECEIPTS_PER_REQUEST_MAX
    for receipt in receipts:
        applied = _receipt_apply(route_key=route_key, receipt=receipt, keep_early=early_left > 0)
        if applied is None:
            early_left -= 1
        changed += bool(applied)
    if early_left < 0:
        logger.warning(
            "route %s: %s receipts for unknown message ids dropped (at most %s kept per request)",
            route_key,
            -early_left,
            EARLY_RECEIPTS_PER_REQUEST_MAX,
        )
    return changed


def receipt_lock(*, route_key: str, provider_message_id: str) -> None:
    """Orders a receipt against the commit of the send it names. Without it the two could pass each other:
    the receipt finding no attempt with the id yet, the send finding no early receipt yet, and the
    receipt lost."""
    advisory_xact_lock(f"sms-receipt:{route_key}:{provider_message_id}")


@transaction.atomic
def _receipt_apply(*, route_key: str, receipt: Receipt, keep_early: bool) -> bool | None:
    """Whether the receipt changed its attempt; None when it names no attempt (kept as an EarlyReceipt
    if `keep_early`, else dropped)."""
    now = timezone.now()
    if not receipt.provider_message_id:
        return False
    receipt_lock(route_key=route_key, provider_message_id=receipt.provider_message_id)
    # of=self: the joins only read the ids its webhook event needs; the SMS and session rows stay unlocked.
    attempt = _attempts_named(route_key, receipt.provider_message_id).select_for_update(of=("self",)).first()
    if attempt is None and not keep_early:
        return None
    if attempt is None:
        EarlyReceipt.objects.create(
            route_key=route_key,
            provider_message_id=receipt.provider_message_id[:200],
            status=receipt.status,
            provider_status=receipt.provider_status[:64],
            error_code=receipt.error_code[:64],
            received_at=now,
        )
        logger.info("receipt for an unknown message id on route %s, kept in case its send has not committed", route_key)
        return None
    return _attempt_apply(
        attempt,
        status=receipt.status,
        provider_status=receipt.provider_status,
        error_code=receipt.error_code,
        at=receipt.at or now,
    )


def _attempt_apply(attempt: SmsAttempt, *, status: str, provider_status: str, error_code: str, at: datetime) -> bool:
    if attempt.status in SmsAttempt.FINAL:
        return False  # the first final status stays
    if status == RECEIPT_SENT:
        if attempt.status == SmsAttempt.Status.SENT:
            return False
        SmsAttempt.objects.filter(pk=attempt.pk).update(
            status=SmsAttempt.Status.SENT, provider_status=provider_status[:64]
        )
        return True
    if status not in FINAL_RECEIPT_STATUSES:
        return False
    SmsAttempt.objects.filter(pk=attempt.pk).update(
        status=status, provider_status=provider_status[:64], error_code=error_code[:64], receipt_at=at
    )
    metrics.SMS.labels(route=attempt.route_name, status=status).inc()  # a final receipt, once per attempt
    # The SMS itself shows the receipt of the send that carried it last, and only once.
    changed = (
        SmsMessage.objects.filter(
            pk=attempt.message_id, route_key=attempt.route_key, provider_message_id=attempt.provider_message_id
        )
        .exclude(status__in=FINAL_RECEIPT_STATUSES)
        .update(
            status=status, delivered_at=at if status == SmsMessage.Status.DELIVERED else None, updated_at=timezone.now()
        )
    )
    if changed and status != SmsMessage.Status.DELIVERED and attempt.sms_session_id is not None:  # type: ignore[attr-defined]
        # Failed for good (a WhatsApp `failed`, a call busy or unanswered...): the next channel, at once.
        fallback_now(session_id=attempt.sms_session_id, message_id=attempt.message_id, now=timezone.now())  # type: ignore[attr-defined]
    event_type = otp_sms_event_type(status)
    # A relayed SMS (no session) makes no event: the events are a session's (API.md section 9).
    if changed and event_type is not None and attempt.sms_session_public_id is not None:  # type: ignore[attr-defined]
        # The ids come annotated on the attempt (_attempts_named): no read unless someone listens.
        otp_event_emit(
            workspace_id=attempt.sms_workspace_id,  # type: ignore[attr-defined]
            session_public_id=attempt.sms_session_public_id,  # type: ignore[attr-defined]
            event_type=event_type,
            at=at,
        )
    return True


def _attempts_named(route_key: str, provider_message_id: str) -> QuerySet[SmsAttempt]:
    """The attempts a receipt names, latest first, with their SMS's workspace and session ids."""
    return (
        SmsAttempt.objects.filter(route_key=route_key, provider_message_id=provider_message_id)
        .annotate(
            sms_workspace_id=F("message__workspace_id"),
            sms_session_id=F("message__session_id"),
            sms_session_public_id=F("message__session__public_id"),
        )
        .order_by("-started_at", "-pk")
    )


def early_receipts_apply(*, route_key: str, provider_message_id: str) -> None:
    """Applies the receipts that arrived before the send naming `provider_message_id` committed."""
    if not provider_message_id:
        return
    early = list(
        EarlyReceipt.objects.filter(route_key=route_key, provider_message_id=provider_message_id).order_by(
            "received_at", "pk"
        )
    )
    if not early:
        return
    attempt = _attempts_named(route_key, provider_message_id).first()
    if attempt is None:
        return
    for receipt in early:
        _attempt_apply(
            attempt,
            status=receipt.status,
            provider_status=receipt.provider_status,
            error_code=receipt.error_code,
            at=receipt.received_at,
        )
        attempt.refresh_from_db()
    EarlyReceipt.objects.filter(pk__in=[receipt.pk for receipt in early]).delete()
