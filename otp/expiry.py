"""The end of a session's life: pending sessions past their validity become EXPIRED (and are reported),
and sessions past their retention are deleted with what hangs off them.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from otp.day_functions import day_functions_sync
from otp.events import Event, otp_event_emit
from otp.models import DailySmsCount, EarlyReceipt, OtpSession, SmsMessage, WrongCode
from otp.partitions import (
    ATTEMPTS,
    CLOCK_SKEW,
    MAX_VALIDITY,
    SESSIONS,
    SMS,
    WRONG_CODES,
    partitioned,
    partitions_drop_before,
    partitions_ensure,
)

SessionStatus = OtpSession.Status

# Sessions (or relayed SMS) deleted per transaction by the purge of plain tables, with the rows that hang off
# them: what one batch holds in the worker's memory.
PURGE_BATCH_ROWS = 1000


def otp_sessions_expire(*, limit: int = 1000) -> int:
    """Writes EXPIRED on PENDING sessions past their validity (beat, every 30 s) and reports each as
    `otp.expired`; returns how many. Readers already take such a session as expired: this is what tells
    the workspace's webhooks, close to the moment it happened. Rows another transaction holds (a verify
    of that very session) are skipped: the next run, or that verify, takes them.
    """
    now = timezone.now()
    # Sessions of the last two days only: one pending longer expired a day ago at the latest (validity is at
    # most MAX_VALIDITY), and was reported then unless beat was down a whole day; the bound keeps the
    # PostgreSQL's partitions read to the newest few (otp.partitions).
    recent = now - 2 * MAX_VALIDITY
    with transaction.atomic():
        due = list(
            OtpSession.objects.select_for_update(skip_locked=True)
            .filter(status=SessionStatus.PENDING, expires_at__lte=now, created_at__gt=recent)
            .filter(created_at__lt=now + CLOCK_SKEW)
            .order_by("expires_at")
            .values_list("pk", "workspace_id", "public_id")[:limit]
        )
        OtpSession.objects.filter(
            pk__in=[pk for pk, _, _ in due], created_at__gt=recent, created_at__lt=now + CLOCK_SKEW
        ).update(status=SessionStatus.EXPIRED)
        for _, workspace_id, public_id in due:
            otp_event_emit(workspace_id=workspace_id, session_public_id=public_id, event_type=Event.OTP_EXPIRED, at=now)
    return len(due)


def otp_sessions_purge(*, older_than_days: int | None = None) -> int:
    """Deletes sessions (and, by cascade, their SMS rows) and relayed SMS past their retention, wrong codes
    past the guess budget's window and daily counters of past days; returns how many sessions went (on
    PostgreSQL, how many daily partitions: they go whole, unread, otp.partitions)."""
    now = timezone.now()
    days = older_than_days if older_than_days is not None else settings.OTP_SESSION_RETENTION_DAYS
    cutoff = now - timedelta(days=days)
    wrong_codes_cutoff = now - timedelta(seconds=settings.OTP_WRONG_CODE_WINDOW_SECONDS)
    if partitioned():
        # A day goes when its last hour is past retention: the sessions, the SMS (relayed ones too) and the
        # attempts of that day, each table's own partition (an attempt may start a day after its SMS: it
        # goes a day later). DROP TABLE, not DELETE: no row is read, no dead tuple is left.
        deleted = partitions_drop_before(SESSIONS, cutoff)
        partitions_drop_before(SMS, cutoff)
        partitions_drop_before(ATTEMPTS, cutoff)
        partitions_drop_before(WRONG_CODES, wrong_codes_cutoff)
        day_functions_sync()  # the functions of the days gone go too
    else:
        deleted = _delete_in_batches(OtpSession.objects.filter(created_at__lt=cutoff))
        # Relayed SMS have no session to go with: the same retention (otp_sms_relayed_created_idx).
        _delete_in_batches(SmsMessage.objects.filter(session__isnull=True, created_at__lt=cutoff))
        WrongCode.objects.filter(created_at__lt=wrong_codes_cutoff).delete()
    DailySmsCount.objects.filter(day__lt=now.date() - timedelta(days=1)).delete()
    EarlyReceipt.objects.filter(received_at__lt=now - timedelta(days=1)).delete()
    return deleted


def _delete_in_batches(rows: QuerySet) -> int:
    """Plain tables: deletes `rows` PURGE_BATCH_ROWS at a time, each batch with what Django's collector
    cascades to (a session's SMS, their attempts, its test inbox row) in its own transaction. One delete() of
    them all would load every row past retention, and every row of theirs, into the worker's memory at once.
    Returns how many of `rows` went (delete()'s total also counts the rows cascaded to)."""
    model, deleted = rows.model, 0
    while batch := list(rows.values_list("pk", flat=True)[:PURGE_BATCH_ROWS]):
        _, by_model = model.objects.filter(pk__in=batch).delete()
        deleted += by_model.get(model._meta.label, 0)
    return deleted


def otp_partitions_ensure() -> int:
    """Hourly (beat): the daily partitions of the next OTP_PARTITIONS_AHEAD_DAYS days (PostgreSQL), and each
    day's functions, which the hot paths call (otp.day_functions); returns how many partitions it made."""
    created = partitions_ensure(now=timezone.now(), ahead_days=settings.OTP_PARTITIONS_AHEAD_DAYS)
    day_functions_sync()
    return created
