"""The dashboard's channel breakdown (issue 21): sends, delivery rate, conversion and units per channel and per
country and channel, read from the rollup, which keeps the channel in its key.

A session is credited (requests, approvals) to the channel of its latest send, which is the one whose code
approved it; it counts among a channel's `sessions` once for each channel it had a send by. So a channel's
conversion is sessions approved by it ÷ sessions that tried it, and "fell back" the sessions that tried it
and ended on another channel.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F, Sum
from django.urls import reverse
from django.utils import timezone

from cockpit.models import TrafficHour
from cockpit.selectors import dashboard_get
from cockpit.services import traffic_rollup_refresh
from cockpit.tests.helpers import numbers, tables_of
from otp.models import OtpSession
from otp.tests.factories import OtpSessionFactory, SmsMessageFactory
from senders.models import Route
from senders.routes import route_create
from senders.tests.factories import SenderNameFactory
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory
from zeckta.testing import run_together

pytestmark = pytest.mark.django_db

APPROVED, EXPIRED = "APPROVED", "EXPIRED"
CHANNEL_COUNTS = (
    "sessions",
    "approved",
    "conversion",
    "fell_back",
    "sms",
    "delivered",
    "delivery_rate",
    "failed",
    "units",
)


def ago(**delta: float):
    return timezone.now() - timedelta(**delta)


def session(sender, *, country="GH", status=EXPIRED, created_at=None, sends=(), **fields) -> OtpSession:
    """A session with its sends, in order: each (channel, status, route[, units[, provider took it]])."""
    made = OtpSessionFactory(
        sender_name=sender, country=country, status=status, created_at=created_at or ago(hours=1), **fields
    )
    for index, (channel, send_status, route, *rest) in enumerate(sends):
        units = rest[0] if rest else 1
        taken = rest[1] if len(rest) > 1 else True
        SmsMessageFactory(
            session=made,
            channel=channel,
            status=send_status,
            route_name=route,
            segments=units,
            provider_message_id=f"p-{made.pk}-{index}" if taken else "",
            created_at=made.created_at + timedelta(seconds=40 * index),
        )
    return made


@pytest.fixture
def channels():
    """Within the last 24 hours, Acme's sessions:

    GH  1 SMS delivered, approved
        2 WhatsApp undeliverable, then SMS delivered, approved (fell back from WhatsApp)
        3 WhatsApp delivered, approved
        4 WhatsApp delivered, never approved
        8 WhatsApp expired on meta-gh after the provider took it, resent by WhatsApp on meta-backup, delivered,
          approved
       10 a reviewer number: approved, nothing sent
    NG  5 WhatsApp sent, SMS sent, then a call completed: approved by the call's code
        6 SMS failed before any provider took it
    KE  7 a call completed (2 units), never approved
    and a test-mode WhatsApp session that counts nowhere; three days ago, one more GH WhatsApp approval.
    """
    for name, backend in (("afritel", "http"), ("meta-gh", "http"), ("meta-backup", "http"), ("voice-ng", "http")):
        route_create(name=name, backend=backend, values={"url": "http://127.0.0.1:9/sms"})
    sender = SenderNameFactory(workspace=WorkspaceFactory(name="Acme", slug="acme"), name="ACME")
    session(sender, status=APPROVED, sends=[("sms", "delivered", "afritel")])
    session(sender, status=APPROVED, sends=[("whatsapp", "undeliverable", "meta-gh"), ("sms", "delivered", "afritel")])
    session(sender, status=APPROVED, sends=[("whatsapp", "delivered", "meta-gh")])
    session(sender, sends=[("whatsapp", "delivered", "meta-gh")])
    session(
        sender,
        country="NG",
        status=APPROVED,
        sends=[("whatsapp", "sent", "meta-gh"), ("sms", "sent", "default"), ("voice", "delivered", "voice-ng")],
    )
    session(sender, country="NG", sends=[("sms", "failed", "default", 1, False)])
    session(sender, country="KE", sends=[("voice", "delivered", "voice-ng", 2)])
    session(
        sender,
        status=APPROVED,
        resends=1,
        sends=[("whatsapp", "expired", "meta-gh"), ("whatsapp", "delivered", "meta-backup")],
    )
    session(sender, status=APPROVED)
    session(sender, status=APPROVED, is_test=True, sends=[("whatsapp", "delivered", "meta-gh")])
    session(sender, status=APPROVED, created_at=ago(days=3), sends=[("whatsapp", "delivered", "meta-gh")])
    traffic_rollup_refresh()
    return sender.workspace


def index_tables(client, **query) -> dict:
    response = client.get(reverse("admin:index"), query)
    assert response.status_code == 200
    return tables_of(response.text)


# --- The numbers -------------------------------------------------------------------------------------------


def test_the_breakdown_by_channel_is_right_for_a_known_history(admin_client, channels):
    by_channel = index_tables(admin_client)["cockpit-by-channel"]

    assert list(by_channel) == ["sms", "whatsapp", "voice", ""]  # the service's order, then no send at all
    assert [row["label"] for row in by_channel.values()] == ["SMS", "WhatsApp", "Voice call", "(nothing sent)"]
    # SMS: tried by 1, 2, 5, 6; approved by 1 and 2 (5 was approved by its call); 5 fell back to voice.
    assert numbers(by_channel["sms"], *CHANNEL_COUNTS) == (
        "4", "2", "50.0 %", "1", "4", "2", "50.0 %", "1", "3"
    )  # fmt: skip
    # WhatsApp: tried by 2, 3, 4, 5, 8 (twice sent, once counted); approved by 3 and 8; 2 and 5 fell back.
    # The expired send was taken by its provider: charged and failed.
    assert numbers(by_channel["whatsapp"], *CHANNEL_COUNTS) == (
        "5", "2", "40.0 %", "2", "6", "3", "50.0 %", "2", "6"
    )  # fmt: skip
    assert numbers(by_channel["voice"], *CHANNEL_COUNTS) == (
        "2", "1", "50.0 %", "0", "2", "2", "100.0 %", "0", "3"
    )  # fmt: skip
    assert numbers(by_channel[""], *CHANNEL_COUNTS) == ("0", "1", "–", "0", "0", "0", "–", "0", "0")

    # The other tables count the same sends and approvals, every channel together.
    totals = index_tables(admin_client)["cockpit-totals"]
    assert numbers(totals["24h"], "requests", "approved", "conversion", "sms", "delivered", "units") == (
        "9", "6", "50.0 %", "12", "7", "12"
    )  # fmt: skip


def test_the_breakdown_by_country_and_channel_shows_which_channel_converts_where(admin_client, channels):
    table = index_tables(admin_client)["cockpit-by-country-channel"]

    # Countries as in the country table (the most sends first), each a group of its channels in the service's order.
    assert list(table) == ["GH/sms", "GH/whatsapp", "GH/", "NG/sms", "NG/whatsapp", "NG/voice", "KE/voice"]
    assert [row["label"] for row in table.values()] == [
        "SMS", "WhatsApp", "(nothing sent)", "SMS", "WhatsApp", "Voice call", "Voice call"
    ]  # fmt: skip
    html = admin_client.get(reverse("admin:index")).text
    assert re.findall(r'<th scope="rowgroup" colspan="10">([^<]+)</th>', html) == ["GH Ghana", "NG Nigeria", "KE Kenya"]
    expected = {
        "GH/sms": ("2", "2", "100.0 %", "0", "2", "2", "100.0 %", "0", "2"),
        "GH/whatsapp": ("4", "2", "50.0 %", "1", "5", "3", "60.0 %", "2", "5"),
        "GH/": ("0", "1", "–", "0", "0", "0", "–", "0", "0"),
        "NG/sms": ("2", "0", "0.0 %", "1", "2", "0", "0.0 %", "1", "1"),
        "NG/whatsapp": ("1", "0", "0.0 %", "1", "1", "0", "0.0 %", "0", "1"),
        "NG/voice": ("1", "1", "100.0 %", "0", "1", "1", "100.0 %", "0", "1"),
        "KE/voice": ("1", "0", "0.0 %", "0", "1", "1", "100.0 %", "0", "2"),
    }
    assert {key: numbers(row, *CHANNEL_COUNTS) for key, row in table.items()} == expected


def test_the_30_day_window_adds_the_older_sends_by_channel(admin_client, channels):
    by_channel = index_tables(admin_client, window="30d")["cockpit-by-channel"]
    assert numbers(by_channel["whatsapp"], "sessions", "approved", "conversion", "sms", "units") == (
        "6", "3", "50.0 %", "7", "7"
    )  # fmt: skip
    assert numbers(by_channel["sms"], "sessions", "sms") == ("4", "4")


def test_the_charts_stack_the_sends_by_channel(admin_client, channels):
    data = admin_client.get(reverse("admin:index")).context["dashboard"].chart_data()

    hourly, daily = data["hourly"], data["daily"]
    assert [(c["key"], c["label"], sum(c["sms"])) for c in hourly["channels"]] == [
        ("sms", "SMS", 4),
        ("whatsapp", "WhatsApp", 6),
        ("voice", "Voice call", 2),
    ]
    # Per bucket, the channels' parts add up to the sends bar they replace.
    for series in (hourly, daily):
        assert [sum(parts) for parts in zip(*(c["sms"] for c in series["channels"]), strict=True)] == series["sms"]
    assert [(c["key"], sum(c["sms"])) for c in daily["channels"]] == [("sms", 4), ("whatsapp", 7), ("voice", 2)]


def test_a_sms_only_service_charts_one_sends_bar(admin_client, workspace):
    session(SenderNameFactory(workspace=workspace), sends=[("sms", "delivered", "default")])
    traffic_rollup_refresh()
    data = admin_client.get(reverse("admin:index")).context["dashboard"].chart_data()
    assert [c["key"] for c in data["hourly"]["channels"]] == ["sms"]
    assert list(index_tables(admin_client)["cockpit-by-channel"]) == ["sms"]


# --- The rollup --------------------------------------------------------------------------------------------


def rollup_rows() -> dict[tuple[str, str, str], tuple[int, ...]]:
    """The last day's rows: (country, channel, route) -> (requests, approved, sessions, sends, delivered, units)."""
    return {
        (row.country, row.channel, row.route_name): (
            row.requests,
            row.approved,
            row.sessions,
            row.sms,
            row.delivered,
            row.units,
        )
        for row in TrafficHour.objects.filter(hour__gte=ago(days=1))
    }


def test_the_rollup_keys_rows_by_channel_and_counts_a_session_once_per_channel(channels):
    rows = rollup_rows()
    assert rows == {
        ("GH", "sms", "afritel"): (2, 2, 2, 2, 2, 2),
        # 2, 3 and 4; 8 counts under the route of its latest WhatsApp send, though its first went here.
        ("GH", "whatsapp", "meta-gh"): (2, 1, 3, 4, 2, 4),
        ("GH", "whatsapp", "meta-backup"): (1, 1, 1, 1, 1, 1),
        ("GH", "", ""): (1, 1, 0, 0, 0, 0),  # the reviewer number: no channel, no route
        ("NG", "whatsapp", "meta-gh"): (0, 0, 1, 1, 0, 1),
        ("NG", "sms", "default"): (1, 0, 2, 2, 0, 1),
        ("NG", "voice", "voice-ng"): (1, 1, 1, 1, 1, 1),
        ("KE", "voice", "voice-ng"): (1, 0, 1, 1, 1, 2),
    }
    # A session's approval is one of the sessions of its channel: never more approvals than sessions that tried.
    assert not TrafficHour.objects.exclude(channel="").filter(approved__gt=F("sessions")).exists()
    # Each session is credited once: the requests add up to the sessions made (the test one left out).
    live = OtpSession.objects.filter(is_test=False, created_at__gte=ago(days=1)).count()
    assert TrafficHour.objects.filter(hour__gte=ago(days=1)).aggregate(total=Sum("requests"))["total"] == live


def test_a_refresh_rebuilds_the_channel_rows_it_covers_and_nothing_twice(channels):
    before = rollup_rows()
    traffic_rollup_refresh()
    assert rollup_rows() == before
    # A late fallback: session 4's WhatsApp code never came back; a call approves it. Its hour is rebuilt.
    late = OtpSession.objects.get(status=EXPIRED, country="GH", sms_messages__channel="whatsapp")
    SmsMessageFactory(session=late, channel="voice", status="delivered", route_name="voice-gh")
    OtpSession.objects.filter(pk=late.pk).update(status=APPROVED, verified_at=timezone.now())
    traffic_rollup_refresh()
    after = rollup_rows()
    assert after[("GH", "voice", "voice-gh")] == (1, 1, 1, 1, 1, 1)
    assert after[("GH", "whatsapp", "meta-gh")] == (1, 1, 3, 4, 2, 4)  # it still tried WhatsApp, and fell back


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_write_each_channel_row_once(channels):
    """Two beat processes at once: the second waits for the first's lock on the state row, then rebuilds the
    same hours; the rows stay one per key (the unique key includes the channel) with the same counts."""
    expected = rollup_rows()
    run_together(3, lambda _: traffic_rollup_refresh())
    assert rollup_rows() == expected
    assert TrafficHour.objects.count() == len(set(TrafficHour.objects.values_list(
        "hour", "workspace", "country", "channel", "route_name"
    )))  # fmt: skip


# --- Who sees it, and what it costs ------------------------------------------------------------------------


def test_the_channel_tables_need_the_dashboard_permission(client, channels):
    user = get_user_model().objects.create_user("clerk", password="clerk-password", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_workspace"))
    client.force_login(user)
    acme_page = reverse("admin:workspaces_workspace_change", args=[channels.pk])
    assert "cockpit-by-channel" not in client.get(reverse("admin:index")).text
    page = client.get(acme_page)
    assert page.status_code == 200 and "cockpit-by-channel" not in page.text

    user.user_permissions.add(Permission.objects.get(codename="view_traffichour"))
    client.force_login(get_user_model().objects.get(pk=user.pk))
    assert "cockpit-by-channel" in client.get(reverse("admin:index")).text
    tables = tables_of(client.get(acme_page).text)
    # The workspace's page has its own channel breakdown, over 30 days.
    assert numbers(tables["cockpit-by-channel"]["whatsapp"], "sessions", "approved", "sms") == ("6", "3", "7")
    assert "NG/voice" in tables["cockpit-by-country-channel"]


def test_a_route_page_has_no_channel_breakdown(admin_client, channels):
    page = admin_client.get(reverse("admin:senders_route_change", args=[Route.objects.get(name="meta-gh").pk]))
    assert page.status_code == 200
    tables = tables_of(page.text)
    assert "cockpit-by-country" in tables and "cockpit-by-channel" not in tables  # a route has one channel


def test_the_channel_breakdown_costs_no_query_more(channels, django_assert_num_queries):
    now = timezone.now()
    with django_assert_num_queries(8):  # the rollup twice, names of workspaces and routes, state, suspects, blocks
        dashboard_get(now=now)
    # More channels, countries, routes and workspaces: more rollup rows, the same queries.
    for index in range(4):
        sender = SenderNameFactory(workspace=WorkspaceFactory())
        for country in ("GH", "NG", "KE", "SN"):
            for channel in ("sms", "whatsapp", "voice"):
                session(sender, country=country, status=APPROVED, sends=[(channel, "delivered", f"{channel}-{index}")])
    traffic_rollup_refresh()
    with django_assert_num_queries(8):
        dashboard = dashboard_get(now=now, window="30d")
    assert len(dashboard.by_country_channel) == 4 and Workspace.objects.count() == 5
    with django_assert_num_queries(6):  # a workspace's part: no blocks
        dashboard_get(now=now, workspace=channels)


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_the_rows_of_before_channels_as_sms():
    """cockpit 0002 on a rollup written before channels: every row is SMS, and a row with a route had as many
    sessions with an SMS as requests (they counted under the route of their latest SMS, as `sessions` does)."""
    workspace = WorkspaceFactory()
    executor = MigrationExecutor(connection)
    executor.migrate([("cockpit", "0001_initial")])
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        for route, requests, sms in (("afritel", 3, 4), ("", 2, 0), ("", 1, 1)):
            cursor.execute(
                "INSERT INTO cockpit_traffichour (hour, workspace_id, country, route_name, requests, approved,"
                " wrong_codes, sms, delivered, failed, units) VALUES (%s, %s, %s, %s, %s, 0, 0, %s, 0, 0, 0)",
                [hour, workspace.pk, "GH" if sms or route else "NG", route, requests, sms],
            )
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes("cockpit"))

    rows = set(TrafficHour.objects.values_list("country", "route_name", "channel", "requests", "sessions"))
    assert rows == {("GH", "afritel", "sms", 3, 3), ("NG", "", "", 2, 0), ("GH", "", "sms", 1, 0)}
