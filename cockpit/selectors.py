"""Reads for the dashboard: sums over the hourly rollup (a few hundred to a few thousand rows for 30 days,
whatever the number of sessions), never over the sessions themselves; and the fraud guard's blocks."""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

import pycountry
from django.conf import settings
from django.db.models import Q, Sum
from django.urls import reverse

from cockpit.models import NumberSuspect, RollupState, TrafficHour
from cockpit.services import TRAFFIC_ROLLUP, hour_floor
from fraud.models import FraudBlock
from senders.models import Route
from workspaces.models import NON_GEOGRAPHIC_REGION, FraudGuardMode, Workspace
from zeckta.channels import Channel

METRICS = ("requests", "approved", "wrong_codes", "sessions", "sms", "delivered", "failed", "units")
# The channel breakdown's order: the channels as the service lists them, then sessions that had no send at all.
CHANNEL_ORDER = (*Channel.values, "")
# The windows, each the current (partial) hour and the whole hours before it.
WINDOWS = {"24h": 24, "30d": 30 * 24}  # in hours
WINDOW_LABELS = {"24h": "Last 24 hours", "30d": "Last 30 days"}
DEFAULT_WINDOW = "24h"


@dataclass
class Counts:
    requests: int = 0
    approved: int = 0
    wrong_codes: int = 0
    sessions: int = 0  # per channel: sessions with a send by it (summed over channels, a fallback counts twice)
    sms: int = 0  # sends, of every channel
    delivered: int = 0
    failed: int = 0
    units: int = 0

    def add(self, values: Mapping[str, int | None], suffix: str = "") -> None:
        for metric in METRICS:
            setattr(self, metric, getattr(self, metric) + (values[metric + suffix] or 0))

    def merge(self, other: "Counts") -> None:
        self.add(asdict(other))

    @property
    def conversion(self) -> float | None:
        """Approved sessions ÷ sends (resends and fallbacks included): what share of the sends paid for a sign-in."""
        return self.approved / self.sms if self.sms else None

    @property
    def session_conversion(self) -> float | None:
        """Of one channel: sessions approved by it ÷ sessions with a send by it. A session is credited to the channel
        of its latest send, the one whose code approved it; it counts in the denominator of every channel it had a
        send by. So a channel that often fails over to another shows a low conversion of its own."""
        return self.approved / self.sessions if self.sessions else None

    @property
    def fell_back(self) -> int:
        """Of one channel: sessions with a send by it whose latest send went by another channel."""
        return max(self.sessions - self.requests, 0)

    @property
    def delivery_rate(self) -> float | None:
        """SMS with a `delivered` receipt ÷ SMS sent (a route whose provider sends no receipts shows none)."""
        return self.delivered / self.sms if self.sms else None


@dataclass
class Row:
    key: str  # the slug, route name, channel or country code (the tests find rows by it)
    label: str
    counts: Counts = field(default_factory=Counts)
    url: str = ""  # its admin page, when it has one
    channel: str = ""  # of a channel's row


@dataclass
class Dashboard:
    window: str
    refreshed_at: datetime | None  # when the rollup was last rebuilt (None: never; beat is not running)
    refresh_took_ms: int
    totals: dict[str, Counts]  # per window
    by_workspace: list[Row]  # for `window`, the most SMS first
    by_route: list[Row]
    by_country: list[Row]
    by_channel: list[Row]  # in CHANNEL_ORDER
    # Per country (in by_country's order), the country's row and its channels' rows (in CHANNEL_ORDER).
    by_country_channel: list[tuple[Row, list[Row]]]
    hourly: list[tuple[datetime, Counts]]  # each of the last 24 hours, oldest first
    daily: list[tuple[date, Counts]]  # each of the last 30 UTC days, oldest first
    # Sends per channel, in the same buckets as hourly and daily (channels with no send in them left out).
    hourly_sends: dict[str, list[int]]
    daily_sends: dict[str, list[int]]
    destinations: list[NumberSuspect]  # flagged first
    # Only of workspaces whose fraud guard is off: the guard's range rules watch every other workspace's ranges,
    # and its blocks and shadow decisions say what it found there.
    ranges: list[NumberSuspect]
    # Of the whole dashboard only (not a workspace's or a route's part of it):
    blocks: list[FraudBlock] = field(default_factory=list)  # in force now (enforce), the newest first
    more_blocks: bool = False  # more are in force than the list shows
    shadow_decisions: list[FraudBlock] = field(default_factory=list)  # of the pumping window, the newest first

    @property
    def totals_rows(self) -> list[tuple[str, str, Counts]]:
        return [(name, WINDOW_LABELS[name], counts) for name, counts in self.totals.items()]

    @property
    def window_label(self) -> str:
        return WINDOW_LABELS[self.window]

    @property
    def least_sms_destination(self) -> int:
        return settings.COCKPIT_PUMPING_MIN_SMS_PER_DESTINATION

    @property
    def least_sms_range(self) -> int:
        return settings.COCKPIT_PUMPING_MIN_SMS_PER_RANGE

    @property
    def pumping_rule(self) -> str:
        share = settings.COCKPIT_PUMPING_MAX_CONVERSION * 100
        return (
            f"at least {self.least_sms_destination} SMS to one number, or {self.least_sms_range} to one range "
            f"of {10**settings.COCKPIT_RANGE_HIDDEN_DIGITS:,} numbers, with a conversion of {share:g} % or less"
        )

    @property
    def pumping_window_hours(self) -> int:
        return settings.COCKPIT_PUMPING_WINDOW_HOURS

    @property
    def flagged(self) -> int:
        return sum(suspect.flagged for suspect in [*self.destinations, *self.ranges])

    def chart_data(self) -> dict:
        """What the charts draw, as JSON for the page (the same numbers as its tables)."""

        def series(
            points: Iterable[tuple[datetime | date, Counts]], sends: dict[str, list[int]], label_format: str
        ) -> dict:
            points = list(points)
            return {
                "labels": [moment.strftime(label_format) for moment, _ in points],
                **{
                    metric: [getattr(counts, metric) for _, counts in points]
                    for metric in ("requests", "approved", "sms", "delivered", "failed")
                },
                "conversion": [None if c.conversion is None else round(c.conversion * 100, 1) for _, c in points],
                # The sends bar, split by channel (stacked): in CHANNEL_ORDER, channels with a send only.
                "channels": [
                    {"key": channel, "label": channel_label(channel), "sms": counts}
                    for channel, counts in sends.items()
                ],
            }

        return {
            "hourly": series(self.hourly, self.hourly_sends, "%H:00"),
            "daily": series(self.daily, self.daily_sends, "%d %b"),
        }


def channel_label(code: str) -> str:
    return Channel(code).label if code in Channel.values else "(nothing sent)"


def country_label(code: str) -> str:
    if code == NON_GEOGRAPHIC_REGION:
        return "No country (+800, +870, +881 ...)"
    country = pycountry.countries.get(alpha_2=code) if code else None
    return f"{code} {getattr(country, 'common_name', None) or country.name}" if country else (code or "unknown")


def dashboard_get(
    *, now: datetime, window: str = DEFAULT_WINDOW, workspace: Workspace | None = None, route_name: str | None = None
) -> Dashboard:
    """The dashboard as of the rollup's last refresh: totals for both windows, the breakdowns for `window`, the
    series for the charts and the suspected pumping; of one workspace's traffic, or one route's, when given.
    Six queries, whatever the traffic: the rollup holds at most one row per hour, workspace, country, channel
    and route, however many sessions there were."""
    window = window if window in WINDOWS else DEFAULT_WINDOW
    current = hour_floor(now)
    starts = {name: current - timedelta(hours=hours - 1) for name, hours in WINDOWS.items()}
    hours = TrafficHour.objects.filter(hour__gte=starts["30d"], hour__lte=current)
    if workspace is not None:
        hours = hours.filter(workspace=workspace)
    if route_name is not None:
        hours = hours.filter(route_name=route_name)
    in_window = {name: Q(hour__gte=start) for name, start in starts.items()}
    combos = (
        hours.values("workspace_id", "country", "channel", "route_name")
        .annotate(
            **{
                f"{metric}_{name}": Sum(metric, filter=condition)
                for metric in METRICS
                for name, condition in in_window.items()
            }
        )
        .order_by()
    )
    series: dict[datetime, Counts] = defaultdict(Counts)
    sends: dict[str, dict[datetime, int]] = defaultdict(dict)  # per channel, per hour
    for sums in hours.values("hour", "channel").annotate(**{m: Sum(m) for m in METRICS}).order_by():
        series[sums["hour"]].add(sums)
        if sums["sms"]:
            sends[sums["channel"]][sums["hour"]] = sums["sms"]

    totals = {name: Counts() for name in WINDOWS}
    groups: dict[str, dict[str, Row]] = {"workspace": {}, "route": {}, "country": {}, "channel": {}}
    country_channels: dict[str, dict[str, Row]] = defaultdict(dict)
    for combo in combos:
        for name in WINDOWS:
            totals[name].add(combo, f"_{name}")
        for dimension, key in (
            ("workspace", combo["workspace_id"]),
            ("route", combo["route_name"]),
            ("country", combo["country"]),
            ("channel", combo["channel"]),
        ):
            groups[dimension].setdefault(str(key), Row(key=str(key), label=str(key))).counts.add(combo, f"_{window}")
        channel = combo["channel"]
        country_channels[combo["country"]].setdefault(
            channel, Row(key=f"{combo['country']}/{channel}", label=channel_label(channel), channel=channel)
        ).counts.add(combo, f"_{window}")
    by = {
        dimension: sorted(
            (row for row in rows.values() if _has_traffic(row)),
            key=lambda row: (-row.counts.sms, -row.counts.requests, row.label),
        )
        for dimension, rows in groups.items()
    }
    by["channel"] = [groups["channel"][code] for code in CHANNEL_ORDER if _has_traffic(groups["channel"].get(code))]
    for row in by["channel"]:
        row.label, row.channel = channel_label(row.key), row.key

    workspaces = Workspace.objects.in_bulk([int(row.key) for row in by["workspace"]])
    for row in by["workspace"]:
        ws = workspaces[int(row.key)]
        row.key, row.label, row.url = ws.slug, ws.name, reverse("admin:workspaces_workspace_change", args=[ws.pk])
    routes = dict(Route.objects.filter(name__in=[row.key for row in by["route"]]).values_list("name", "pk"))
    for row in by["route"]:
        row.label = row.key or "(no SMS sent yet)"
        if row.key in routes:
            row.url = reverse("admin:senders_route_change", args=[routes[row.key]])
        elif row.key == "default":
            row.label = "default (the SMS_BACKEND settings)"
    for row in by["country"]:
        row.label = country_label(row.key)

    by_country_channel = [
        (
            country,
            [
                country_channels[country.key][code]
                for code in CHANNEL_ORDER
                if _has_traffic(country_channels[country.key].get(code))
            ],
        )
        for country in by["country"]
    ]

    moments = [starts["24h"] + timedelta(hours=offset) for offset in range(WINDOWS["24h"])]
    hourly = [(moment, series.get(moment) or Counts()) for moment in moments]
    days: dict[date, Counts] = {(current - timedelta(days=back)).date(): Counts() for back in range(29, -1, -1)}
    for moment, hour_counts in series.items():
        if moment.date() in days:
            days[moment.date()].merge(hour_counts)
    hourly_sends: dict[str, list[int]] = {}
    daily_sends: dict[str, list[int]] = {}
    for code in CHANNEL_ORDER:
        per_hour = sends.get(code, {})
        per_day: dict[date, int] = defaultdict(int)
        for moment, count in per_hour.items():
            per_day[moment.date()] += count
        if any(per_hour.get(moment) for moment in moments):
            hourly_sends[code] = [per_hour.get(moment, 0) for moment in moments]
        if any(per_day.get(day) for day in days):
            daily_sends[code] = [per_day.get(day, 0) for day in days]

    state = RollupState.objects.filter(name=TRAFFIC_ROLLUP).first()
    suspects = NumberSuspect.objects.select_related("workspace")
    if workspace is not None:
        suspects = suspects.filter(workspace=workspace)
    suspects_list = list(suspects)
    # The blocks are the index's: a workspace's page has its own line about them (fraud.admin), a route none.
    whole = workspace is None and route_name is None
    blocks, shadow_decisions = fraud_blocks_shown(now=now) if whole else ([], [])
    limit = settings.COCKPIT_PUMPING_LIST_LIMIT
    return Dashboard(
        window=window,
        refreshed_at=state.refreshed_at if state else None,
        refresh_took_ms=state.took_ms if state else 0,
        totals=totals,
        by_workspace=by["workspace"],
        by_route=by["route"],
        by_country=by["country"],
        by_channel=by["channel"],
        by_country_channel=by_country_channel,
        hourly=hourly,
        daily=list(days.items()),
        hourly_sends=hourly_sends,
        daily_sends=daily_sends,
        destinations=[s for s in suspects_list if s.kind == NumberSuspect.Kind.DESTINATION],
        ranges=[
            s
            for s in suspects_list
            if s.kind == NumberSuspect.Kind.RANGE and s.workspace.fraud_guard_mode == FraudGuardMode.OFF
        ],
        blocks=blocks[:limit],
        more_blocks=len(blocks) > limit,
        shadow_decisions=shadow_decisions,
    )


def _has_traffic(row: Row | None) -> bool:
    return row is not None and bool(row.counts.requests or row.counts.sessions or row.counts.sms)


def fraud_blocks_shown(*, now: datetime) -> tuple[list[FraudBlock], list[FraudBlock]]:
    """The blocks in force now (one more than the dashboard lists, to tell whether there are more), and the
    shadow decisions of the pumping window, of every workspace, the newest first. Two queries without an index
    of their own: blocks are few, one per range or country under attack."""
    limit = settings.COCKPIT_PUMPING_LIST_LIMIT
    rows = FraudBlock.objects.select_related("workspace").order_by("-created_at", "-id")
    active = rows.filter(mode=FraudBlock.Mode.ENFORCE, lifted_at__isnull=True, ends_at__gt=now)
    since = now - timedelta(hours=settings.COCKPIT_PUMPING_WINDOW_HOURS)
    shadow = rows.filter(mode=FraudBlock.Mode.SHADOW, created_at__gte=since)
    return list(active[: limit + 1]), list(shadow[:limit])
