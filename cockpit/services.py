"""The rollups behind the dashboard, rebuilt from the sessions and SMS of the last hours by beat.

The dashboard must stay cheap when the service holds a million sessions, and OTP request and verify must
not pay for it: instead of counting on the hot path, a periodic job (every minute) re-aggregates recent hours
and replaces them. Each run reads only the sessions created in those hours (the `created_at` index) and their
SMS (the `session_id` index); older hours keep the counts of their last rebuild, so the rollup outlives the
sessions' purge.

Most runs rebuild the last COCKPIT_ROLLUP_RECENT_HOURS; every COCKPIT_ROLLUP_SETTLE_EVERY_SECONDS a run rebuilds
the last COCKPIT_ROLLUP_SETTLE_HOURS instead, for what changes late: a session can be approved up to its
validity (at most 24 h) after it was made, and receipts come later still. Each run also rebuilds the list of
suspected SMS pumping over the last COCKPIT_PUMPING_WINDOW_HOURS, from the sessions alone.
"""

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import CharField, Count, Exists, F, Max, Min, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Collate, Concat, Left, Length, TruncHour
from django.utils import timezone

from cockpit.models import NumberSuspect, RollupState, TrafficHour
from otp.models import OtpSession, SmsMessage

TRAFFIC_ROLLUP = "traffic"  # the RollupState row of this job

SmsStatus = SmsMessage.Status
FAILED_STATUSES = (SmsStatus.FAILED, SmsStatus.UNDELIVERABLE, SmsStatus.REJECTED, SmsStatus.EXPIRED)
# What a workspace is charged: the SMS a provider took. An SMS that failed before any provider took it, or
# that expired unsent (a resend replaced it), was never charged (prepaid ones are refunded); one a provider
# took and then reported undeliverable, rejected or expired was.
CHARGED = Q(status__in=SmsMessage.PROVIDER_TOOK) | (Q(status=SmsStatus.EXPIRED) & ~Q(provider_message_id=""))


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RefreshResult:
    rebuilt_from: datetime  # the first hour rebuilt
    hours: int  # hourly buckets rebuilt (the current one included when `complete`)
    rows: int  # TrafficHour rows written
    suspects: int  # NumberSuspect rows written, flagged or not
    took_ms: int
    # False when the run stopped at its time budget before the current hour: the next run goes on from there.
    complete: bool = True


def traffic_rollup_refresh(
    *, now: datetime | None = None, rebuild_from: datetime | None = None, budget_seconds: float | None = None
) -> RefreshResult:
    """Rebuilds the rollup's recent hours (or, when a settling run is due, all that may still change), and the
    suspected-pumping list.

    The first run, or one after beat stood still, rebuilds from the last run on (at most
    COCKPIT_ROLLUP_BACKFILL_DAYS back), so a gap heals itself; `rebuild_from` rebuilds from that hour on
    (never before the sessions' retention: older hours would come back empty).

    The hours are rebuilt oldest first, COCKPIT_ROLLUP_CHUNK_HOURS to a transaction: readers see each hour's
    old rows or its new ones, never a mix, and a month's backfill at millions of sessions a day neither holds
    one transaction for minutes nor starts over when it is stopped: each chunk records its end as the state's
    `resume_from`. A run given `budget_seconds` (beat's: COCKPIT_ROLLUP_RUN_SECONDS) stops after the chunk that
    passes it, and the next run goes on from there; the run that reaches the current hour clears it.
    """
    started = time.monotonic()
    now = now or timezone.now()
    plan: tuple[datetime, bool] | None = None  # the first hour and whether this run settles, read under the lock
    chunk = now
    hours = rows = 0
    while plan is None or chunk < now:
        with transaction.atomic():
            state = _rollup_locked()
            if plan is None:
                plan = _rebuild_plan(state, now=now, rebuild_from=rebuild_from)
                chunk = plan[0]
            start, settling = plan
            end = min(chunk + timedelta(hours=settings.COCKPIT_ROLLUP_CHUNK_HOURS), now)
            written = _traffic_rows(start=chunk, end=end)
            replaced = TrafficHour.objects.filter(hour__gte=chunk)
            (replaced if end == now else replaced.filter(hour__lt=end)).delete()
            TrafficHour.objects.bulk_create(written, batch_size=1000)
            rows += len(written)
            hours += int((hour_floor(end) - chunk) / timedelta(hours=1)) + (end == now)
            chunk = end
            if chunk < now:
                RollupState.objects.filter(pk=state.pk).update(
                    refreshed_at=chunk, rebuilt_from=start, resume_from=chunk
                )
                if budget_seconds is not None and time.monotonic() - started >= budget_seconds:
                    break
                continue
            TrafficHour.objects.filter(hour__lt=now - timedelta(days=settings.COCKPIT_ROLLUP_RETENTION_DAYS)).delete()
            RollupState.objects.filter(pk=state.pk).update(
                refreshed_at=now,
                rebuilt_from=start,
                took_ms=round((time.monotonic() - started) * 1000),
                resume_from=None,
                settled_at=now
                if settling or start <= now - timedelta(hours=settings.COCKPIT_ROLLUP_SETTLE_HOURS)
                else state.settled_at,
            )

    with transaction.atomic():
        _rollup_locked()
        suspects = _number_suspects(since=now - timedelta(hours=settings.COCKPIT_PUMPING_WINDOW_HOURS))
        NumberSuspect.objects.all().delete()
        NumberSuspect.objects.bulk_create(suspects)
    took_ms = round((time.monotonic() - started) * 1000)
    return RefreshResult(
        rebuilt_from=start, hours=hours, rows=rows, suspects=len(suspects), took_ms=took_ms, complete=chunk == now
    )


def _rollup_locked() -> RollupState:
    """The rollup's state row, locked for this transaction: two beat processes (or a run that outlasts its
    interval) rebuild one chunk at a time rather than interleave their writes."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The per-session subquery makes the planner's estimate large enough to compile the query to
            # machine code (JIT), which cost more than the whole query runs; and a day of sessions sorted
            # by number spills to disk at the default 4 MB of sort memory. For this transaction only.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL work_mem = '64MB'")
            # The table it rewrites first, then its state row: a TRUNCATE of both (a test's flush, an
            # operator's) that takes them in that order waits for the run instead of deadlocking with it.
            cursor.execute("LOCK TABLE cockpit_traffichour IN ROW EXCLUSIVE MODE")
    RollupState.objects.get_or_create(name=TRAFFIC_ROLLUP)
    return RollupState.objects.select_for_update().get(name=TRAFFIC_ROLLUP)


def _rebuild_plan(state: RollupState, *, now: datetime, rebuild_from: datetime | None) -> tuple[datetime, bool]:
    """The first hour a run rebuilds, and whether it is a settling run (COCKPIT_ROLLUP_SETTLE_HOURS back)."""
    settling = state.settled_at is None or state.settled_at <= now - timedelta(
        seconds=settings.COCKPIT_ROLLUP_SETTLE_EVERY_SECONDS
    )
    window = timedelta(hours=settings.COCKPIT_ROLLUP_SETTLE_HOURS if settling else settings.COCKPIT_ROLLUP_RECENT_HOURS)
    backfill = now - timedelta(days=settings.COCKPIT_ROLLUP_BACKFILL_DAYS)
    last = state.refreshed_at
    # A run that stopped at its budget left every hour from `resume_from` on to be rebuilt, whatever is asked.
    resume_from = state.resume_from or now
    if rebuild_from is not None:
        return hour_floor(min(rebuild_from, now - window, resume_from)), settling
    if state.resume_from is not None:
        return state.resume_from, settling
    return hour_floor(max(backfill, min(now - window, last - window)) if last else backfill), settling


def _traffic_rows(*, start: datetime, end: datetime) -> list[TrafficHour]:
    """The hourly rows of live sessions created in [start, end): two grouped queries, merged here.

    Sessions go under the channel and route of their latest send (one subquery per session, on the SMS
    `session_id` index, that reads both as "channel:route"); sends under their own. `sessions` counts each
    session once per channel it had a send by, on the latest such send: a send with no later one of the same
    session and channel (another probe of the same index, per send).
    """
    sessions = OtpSession.objects.filter(is_test=False, created_at__gte=start, created_at__lt=end)
    latest_send = (
        SmsMessage.objects.filter(session=OuterRef("pk"))
        .order_by("-id")
        .annotate(channel_route=Concat("channel", Value(":"), "route_name", output_field=CharField()))
        .values("channel_route")[:1]
    )
    by_session = (
        sessions.annotate(
            bucket=TruncHour("created_at"), place=F("country"), latest=Coalesce(Subquery(latest_send), Value(""))
        )
        .values("bucket", "workspace_id", "place", "latest")
        .annotate(
            requests=Count("pk"),
            approved=Count("pk", filter=Q(status=OtpSession.Status.APPROVED)),
            wrong_codes=Coalesce(Sum("attempts_used"), 0),
        )
        .order_by()
    )
    later_by_same_channel = SmsMessage.objects.filter(
        session_id=OuterRef("session_id"), channel=OuterRef("channel"), pk__gt=OuterRef("pk")
    )
    by_sms = (
        SmsMessage.objects.filter(is_test=False, session__created_at__gte=start, session__created_at__lt=end)
        .annotate(
            bucket=TruncHour("session__created_at"),
            place=F("session__country"),
            latest=Concat("channel", Value(":"), "route_name", output_field=CharField()),
        )
        .values("bucket", "workspace_id", "place", "latest")
        .annotate(
            sessions=Count("pk", filter=~Exists(later_by_same_channel)),
            sms=Count("pk"),
            delivered=Count("pk", filter=Q(status=SmsStatus.DELIVERED)),
            failed=Count("pk", filter=Q(status__in=FAILED_STATUSES)),
            units=Coalesce(Sum("units", filter=CHARGED), 0),
        )
        .order_by()
    )
    merged: dict[tuple, dict[str, Any]] = defaultdict(dict)
    for row in [*by_session, *by_sms]:
        # "" for a session with no send: no channel, no route.
        channel, _, route = row.pop("latest").partition(":")
        key = (row.pop("bucket"), row.pop("workspace_id"), row.pop("place"), channel, route)
        merged[key].update(row)
    return [
        TrafficHour(hour=hour, workspace_id=workspace_id, country=country, channel=channel, route_name=route, **counts)
        for (hour, workspace_id, country, channel, route), counts in sorted(merged.items())
    ]


def number_range(number: str) -> str:
    """The range a number belongs to: its first digits, the last COCKPIT_RANGE_HIDDEN_DIGITS hidden."""
    return number[: -settings.COCKPIT_RANGE_HIDDEN_DIGITS]


def _number_suspects(*, since: datetime) -> list[NumberSuspect]:
    """Per workspace, the destinations and ranges with the most SMS that no approval followed since `since`
    (among those with at least COCKPIT_PUMPING_MIN_SMS_*), flagged when their conversion is at most
    COCKPIT_PUMPING_MAX_CONVERSION.

    Read from the sessions alone (the `created_at` index): a session's SMS are its first send and its resends.
    Joining the SMS rows would cost a scan of all of them, every minute, for the same number.
    """
    sessions = OtpSession.objects.filter(is_test=False, created_at__gte=since)
    # Grouped in the "C" collation: numbers are digits, and sorting a day of them by the database's language
    # rules cost several times more.
    # A destination is one number (no DISTINCT: its groups are hashed, not sorted).
    kinds = (
        (
            NumberSuspect.Kind.DESTINATION,
            Collate("dest", "C"),
            Value(1),
            settings.COCKPIT_PUMPING_MIN_SMS_PER_DESTINATION,
        ),
        (
            NumberSuspect.Kind.RANGE,
            Collate(Left("dest", Length("dest") - settings.COCKPIT_RANGE_HIDDEN_DIGITS), "C"),
            Count(Collate("dest", "C"), distinct=True),
            settings.COCKPIT_PUMPING_MIN_SMS_PER_RANGE,
        ),
    )
    suspects = []
    for kind, number, distinct_numbers, least in kinds:
        rows = (
            sessions.annotate(number=number)
            .values("workspace_id", "country", "number")
            .annotate(
                sms=Sum(F("resends") + 1),
                numbers=distinct_numbers,
                approved=Count("pk", filter=Q(status=OtpSession.Status.APPROVED)),
                first_sms_at=Min("created_at"),
                last_sms_at=Max("created_at"),
            )
            .filter(sms__gte=least)
            .order_by((F("approved") - F("sms")).asc(), "number")[: settings.COCKPIT_PUMPING_LIST_LIMIT]
        )
        suspects += [
            NumberSuspect(
                kind=kind, flagged=row["approved"] <= row["sms"] * settings.COCKPIT_PUMPING_MAX_CONVERSION, **row
            )
            for row in rows
        ]
    return suspects
