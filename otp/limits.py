"""The send limits every OTP SMS meets, a first send's and a resend's alike (API.md section 6): the
destination's window, the wrong-code budget, the country's hourly ceiling and the workspace's daily cap.

They count SMS, not sessions, of the caller's mode only (test rows among test rows). This is the Python
version; a live request on PostgreSQL meets the same limits inside the database function `otp_request`
(otp/sql/otp_request.sql), and the tests hold the two to the same answers.
"""

import math
from datetime import UTC, datetime, time, timedelta
from typing import NoReturn

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from otp.errors import DestinationRateLimited, WorkspaceQuotaExceeded
from otp.models import DailySmsCount, SmsMessage, WrongCode
from otp.partitions import CLOCK_SKEW
from workspaces.models import Workspace
from zeckta import metrics
from zeckta.db import advisory_xact_lock

COUNTRY_WINDOW = timedelta(hours=1)


def dest_lock(workspace: Workspace, dest: str) -> str:
    """Without it, two identical requests could both find no pending session and both send, and the
    per-destination counts could be passed by requests for different purposes."""
    return f"otp-dest:{workspace.pk}:{dest}"


def country_lock(workspace: Workspace, country: str) -> str:
    """Taken after the destination's (always in that order, so never a deadlock): the hourly country
    ceiling, which requests to different numbers would otherwise each pass."""
    return f"otp-country:{workspace.pk}:{country}"


# A send limit's name (the database function's outcome) -> zeckta_rate_limited_total's reason.
_RATE_LIMITED_REASONS = {
    "destination_limited": "destination",
    "guesses_limited": "wrong_codes",
    "country_limited": "country",
    "daily_cap": "daily_cap",
}


def send_limit_refuse(limit: str, *, workspace: Workspace, country: str, wait: int, now: datetime) -> NoReturn:
    """Raises the error for a send limit the request met."""
    if limit in _RATE_LIMITED_REASONS:
        metrics.RATE_LIMITED.labels(reason=_RATE_LIMITED_REASONS[limit]).inc()
    if limit == "destination_limited":
        raise DestinationRateLimited(retry_after_seconds=wait)
    if limit == "guesses_limited":
        raise DestinationRateLimited(
            "Too many wrong codes for this destination in the last 24 hours. Retry later.", retry_after_seconds=wait
        )
    if limit == "country_limited":
        raise DestinationRateLimited(
            f"Too many OTP SMS to {country} in the last hour. Retry later.", retry_after_seconds=wait
        )
    if limit == "daily_cap":
        tomorrow = datetime.combine(now.date() + timedelta(days=1), time.min, tzinfo=UTC)
        raise WorkspaceQuotaExceeded(retry_after_seconds=math.ceil((tomorrow - now).total_seconds()))
    raise ValueError(f"no such send limit: {limit!r}")


def send_limits_check(
    *, workspace: Workspace, dest: str, country: str, now: datetime, test: bool, reviewer: bool = False
) -> None:
    """Every limit on a new OTP SMS, a resend's too: they count SMS, not sessions, of the caller's mode
    only (test rows among test rows).

    `reviewer` (`dest` is one of the workspace's reviewer numbers): its wrong codes count in both modes
    together. Its fixed code is the same for a live and a test key, so a budget per mode would give a
    guesser of that one code twice the budget.
    """
    sent = SmsMessage.objects.filter(workspace=workspace, is_test=test)
    window = timedelta(seconds=workspace.destination_window_seconds)
    wait = _window_full_for(sent.filter(to=dest), limit=workspace.destination_limit, window=window, now=now)
    if wait is not None:
        send_limit_refuse("destination_limited", workspace=workspace, country=country, wait=wait, now=now)
    wrong_codes = WrongCode.objects.filter(workspace=workspace, dest=dest)
    if not reviewer:
        wrong_codes = wrong_codes.filter(is_test=test)
    guess_window = timedelta(seconds=settings.OTP_WRONG_CODE_WINDOW_SECONDS)
    wait = _window_full_for(wrong_codes, limit=workspace.wrong_code_budget, window=guess_window, now=now)
    if wait is not None:
        send_limit_refuse("guesses_limited", workspace=workspace, country=country, wait=wait, now=now)
    if workspace.country_hourly_limit and country:
        advisory_xact_lock(country_lock(workspace, country))
        wait = _window_full_for(
            sent.filter(country=country), limit=workspace.country_hourly_limit, window=COUNTRY_WINDOW, now=now
        )
        if wait is not None:
            send_limit_refuse("country_limited", workspace=workspace, country=country, wait=wait, now=now)


def _window_full_for(
    rows: QuerySet[SmsMessage] | QuerySet[WrongCode], *, limit: int, window: timedelta, now: datetime
) -> int | None:
    """Seconds until `rows` created within `window` drop below `limit`; None while below it.

    Reads only the newest `limit` creation times (one indexed query): the window reopens when the
    oldest of them leaves it.
    """
    # Bounded both ways, as otp_request() does: PostgreSQL reads the window's daily partitions only.
    newest_first = rows.filter(created_at__gt=now - window, created_at__lt=now + CLOCK_SKEW).order_by("-created_at")
    recent = list(newest_first.values_list("created_at", flat=True)[:limit])
    if len(recent) < limit:
        return None
    return math.ceil((recent[-1] + window - now).total_seconds())


def daily_cap_count(*, workspace: Workspace, now: datetime) -> None:
    """One more SMS on the workspace's UTC day, or WorkspaceQuotaExceeded at its cap.

    One upsert whose update is conditional: concurrent requests queue on the counter row and each
    re-checks the count the previous one committed, so the cap holds exactly.
    """
    if not workspace.daily_sms_cap:
        return
    table = DailySmsCount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (workspace_id, day, count) VALUES (%s, %s, 1) "
            f"ON CONFLICT (workspace_id, day) DO UPDATE SET count = {table}.count + 1 "
            f"WHERE {table}.count < %s RETURNING count",
            [workspace.pk, now.date(), workspace.daily_sms_cap],
        )
        counted = cursor.fetchone()
    if counted is None:
        send_limit_refuse("daily_cap", workspace=workspace, country="", wait=0, now=now)
