"""The rollups behind the dashboard, rebuilt from the sessions and SMS of the last hours by beat.

The dashboard must stay cheap when the service holds a million sessions, and OTP request and verify must
not pay for it: instead of counting on the hot path, a periodic job re-aggregates the hours whose sessions
can still change (COCKPIT_ROLLUP_REFRESH_HOURS: a session can be approved up to its validity, at most
24 h, and receipts come later still) and replaces them. Each run reads only the sessions created in those
hours (the `created_at` index) and their SMS (the `session_id` index); older hours keep the counts of their
last rebuild, so the rollup outlives the sessions' purge. The list of suspected SMS pumping is rebuilt by
the same run from the last COCKPIT_PUMPING_WINDOW_HOURS.
"""

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Left, Length, TruncHour
from django.utils import timezone

from cockpit.models import NumberSuspect, RollupState, TrafficHour
from otp.models import OtpSession, SmsMessage

TRAFFIC_ROLLUP = "traffic"  # the RollupState row of this job

SmsStatus = SmsMessage.Status
FAILED_STATUSES = (SmsStatus.FAILED, SmsStatus.UNDELIVERABLE, SmsStatus.REJECTED, SmsStatus.EXPIRED)
# What a workspace is charged: the SMS a provider took. An SMS that failed before any provider took it, or
# that expired unsent (a resend replaced it), was never charged (prepaid ones are refunded); one a provider
# took and then reported undeliverable, rejected or expired was.
CHARGED = Q(status__in=(SmsStatus.SUBMITTED, SmsStatus.SENT, SmsStatus.DELIVERED, SmsStatus.UNDELIVERABLE,
                        SmsStatus.REJECTED)) | (Q(status=SmsStatus.EXPIRED) & ~Q(provider_message_id=""))


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class RefreshResult:
    rebuilt_from: datetime  # the first hour rebuilt
    hours: int  # hourly buckets rebuilt (the current one included)
    rows: int  # TrafficHour rows written
    suspects: int  # NumberSuspect rows written, flagged or not
    took_ms: int


def traffic_rollup_refresh(*, now: datetime | None = None, rebuild_from: datetime | None = None) -> RefreshResult:
    """Rebuilds the rollup hours whose sessions may still change, and the suspected-pumping list.

    The first run, or one after beat was stopped for a while, rebuilds from COCKPIT_ROLLUP_BACKFILL_DAYS
    ago (or from the last run, less the refresh window) instead, so a gap heals itself; `rebuild_from`
    rebuilds from that hour on (never before the sessions' retention: older hours would come back empty).
    Readers see the old rows or the new ones, never a mix: it is one transaction.
    """
    started = time.monotonic()
    now = now or timezone.now()
    refresh = timedelta(hours=settings.COCKPIT_ROLLUP_REFRESH_HOURS)
    with transaction.atomic():
        RollupState.objects.get_or_create(name=TRAFFIC_ROLLUP)
        # Two beat processes (or a run that outlasts its interval) queue here rather than rebuild twice.
        state = RollupState.objects.select_for_update().get(name=TRAFFIC_ROLLUP)
        backfill = now - timedelta(days=settings.COCKPIT_ROLLUP_BACKFILL_DAYS)
        last = state.refreshed_at
        if rebuild_from is not None:
            start = hour_floor(min(rebuild_from, now - refresh))
        else:
            start = hour_floor(max(backfill, min(now - refresh, last - refresh)) if last else backfill)
        rows = _traffic_rows(start=start, end=now)
        TrafficHour.objects.filter(hour__gte=start).delete()
        TrafficHour.objects.bulk_create(rows, batch_size=1000)
        TrafficHour.objects.filter(hour__lt=now - timedelta(days=settings.COCKPIT_ROLLUP_RETENTION_DAYS)).delete()

        suspects = _number_suspects(since=now - timedelta(hours=settings.COCKPIT_PUMPING_WINDOW_HOURS))
        NumberSuspect.objects.all().delete()
        NumberSuspect.objects.bulk_create(suspects)

        took_ms = round((time.monotonic() - started) * 1000)
        RollupState.objects.filter(pk=state.pk).update(refreshed_at=now, rebuilt_from=start, took_ms=took_ms)
    hours = int((hour_floor(now) - start) / timedelta(hours=1)) + 1
    return RefreshResult(rebuilt_from=start, hours=hours, rows=len(rows), suspects=len(suspects), took_ms=took_ms)


def _traffic_rows(*, start: datetime, end: datetime) -> list[TrafficHour]:
    """The hourly rows of live sessions created in [start, end): two grouped queries, merged here."""
    sessions = OtpSession.objects.filter(is_test=False, created_at__gte=start, created_at__lt=end)
    latest_route = SmsMessage.objects.filter(session=OuterRef("pk")).order_by("-id").values("route_name")[:1]
    by_session = (
        sessions.annotate(bucket=TruncHour("created_at"), place=F("country"),
                          route=Coalesce(Subquery(latest_route), Value("")))
        .values("bucket", "workspace_id", "place", "route")
        .annotate(requests=Count("pk"), approved=Count("pk", filter=Q(status=OtpSession.Status.APPROVED)),
                  wrong_codes=Coalesce(Sum("attempts_used"), 0))
        .order_by()
    )
    by_sms = (
        SmsMessage.objects.filter(is_test=False, session__created_at__gte=start, session__created_at__lt=end)
        .annotate(bucket=TruncHour("session__created_at"), place=F("session__country"), route=F("route_name"))
        .values("bucket", "workspace_id", "place", "route")
        .annotate(sms=Count("pk"), delivered=Count("pk", filter=Q(status=SmsStatus.DELIVERED)),
                  failed=Count("pk", filter=Q(status__in=FAILED_STATUSES)),
                  units=Coalesce(Sum("units", filter=CHARGED), 0))
        .order_by()
    )
    merged: dict[tuple, dict[str, Any]] = defaultdict(dict)
    for row in [*by_session, *by_sms]:
        key = (row.pop("bucket"), row.pop("workspace_id"), row.pop("place"), row.pop("route"))
        merged[key].update(row)
    return [
        TrafficHour(hour=hour, workspace_id=workspace_id, country=country, route_name=route, **counts)
        for (hour, workspace_id, country, route), counts in sorted(merged.items())
    ]


def number_range(number: str) -> str:
    """The range a number belongs to: its first digits, the last COCKPIT_RANGE_HIDDEN_DIGITS hidden."""
    return number[: -settings.COCKPIT_RANGE_HIDDEN_DIGITS]


def _number_suspects(*, since: datetime) -> list[NumberSuspect]:
    """Per workspace, the destinations and ranges with the most SMS that no approval followed since `since`
    (among those with at least COCKPIT_PUMPING_MIN_SMS_*), flagged when their conversion is at most
    COCKPIT_PUMPING_MAX_CONVERSION."""
    sms = SmsMessage.objects.filter(is_test=False, session__created_at__gte=since)
    kinds = (
        (NumberSuspect.Kind.DESTINATION, F("to"), settings.COCKPIT_PUMPING_MIN_SMS_PER_DESTINATION),
        (NumberSuspect.Kind.RANGE, Left("to", Length("to") - settings.COCKPIT_RANGE_HIDDEN_DIGITS),
         settings.COCKPIT_PUMPING_MIN_SMS_PER_RANGE),
    )
    suspects = []
    for kind, number, least in kinds:
        rows = (
            sms.annotate(number=number, place=F("session__country")).values("workspace_id", "place", "number")
            .annotate(sms=Count("pk"), numbers=Count("to", distinct=True),
                      approved=Count("session", filter=Q(session__status=OtpSession.Status.APPROVED), distinct=True),
                      first_sms_at=Min("created_at"), last_sms_at=Max("created_at"))
            .filter(sms__gte=least)
            .order_by((F("approved") - F("sms")).asc(), "number")[: settings.COCKPIT_PUMPING_LIST_LIMIT]
        )
        suspects += [
            NumberSuspect(kind=kind, country=row.pop("place"),
                          flagged=row["approved"] <= row["sms"] * settings.COCKPIT_PUMPING_MAX_CONVERSION, **row)
            for row in rows
        ]
    return suspects
