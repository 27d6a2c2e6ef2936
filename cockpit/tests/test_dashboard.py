"""The dashboard on the admin index: who sees it, that its numbers are right for a known history, that it
flags SMS pumping, that it costs a bounded number of queries, and the rollup that keeps it cheap."""

import math
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from cockpit.models import NumberSuspect, RollupState, TrafficHour
from cockpit.services import hour_floor, traffic_rollup_refresh
from cockpit.tasks import TRAFFIC_ROLLUP_REFRESH_TASK
from cockpit.tests.helpers import numbers, tables_of
from fraud.models import FraudBlock
from fraud.tests.factories import FraudBlockFactory
from otp.models import OtpSession
from otp.tests.factories import OtpSessionFactory, SmsMessageFactory
from senders.routes import route_create
from senders.tests.factories import SenderNameFactory
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory
from zeckta.celery import app as celery_app
from zeckta.testing import run_command

pytestmark = pytest.mark.django_db

APPROVED, EXPIRED, LOCKED = "APPROVED", "EXPIRED", "MAX_ATTEMPTS_REACHED"
COUNTS = ("requests", "approved", "conversion", "wrong_codes", "sms", "delivered", "delivery_rate", "failed", "units")


def ago(**delta: float):
    return timezone.now() - timedelta(**delta)


def session(sender, *, country="GH", status=EXPIRED, created_at=None, sms=(), **fields) -> OtpSession:
    """A session with its SMS: each (status, route, segments[, provider took it])."""
    made = OtpSessionFactory(
        sender_name=sender, country=country, status=status, created_at=created_at or ago(hours=1), **fields
    )
    for index, (sms_status, route, segments, *taken) in enumerate(sms):
        SmsMessageFactory(
            session=made,
            status=sms_status,
            route_name=route,
            segments=segments,
            provider_message_id=f"p-{made.pk}-{index}" if (taken[0] if taken else True) else "",
            created_at=made.created_at + timedelta(seconds=40 * index),
        )
    return made


@pytest.fixture
def history():
    """A known history. Within the last 24 hours, Acme: two approved GH sessions (one resent: its first SMS
    expired before any provider took it), an NG one whose SMS failed at once after two wrong codes, a locked GH
    one whose SMS was undeliverable; Globex: an approved KE one whose provider sends no receipts; and a test
    session that must count nowhere. Three days ago, two more Acme GH sessions."""
    route_create(name="afritel", backend="http", values={"url": "http://127.0.0.1:9/sms"}, countries="GH")
    acme = SenderNameFactory(workspace=WorkspaceFactory(name="Acme", slug="acme"), name="ACME").workspace
    acme_sender = acme.sender_names.get()
    globex_sender = SenderNameFactory(workspace=WorkspaceFactory(name="Globex", slug="globex"), name="GLOBEX")
    session(acme_sender, status=APPROVED, sms=[("delivered", "afritel", 1)])
    session(acme_sender, status=APPROVED, resends=1, sms=[("expired", "", 1, False), ("delivered", "afritel", 2)])
    session(acme_sender, country="NG", attempts_used=2, sms=[("failed", "default", 1, False)])
    session(acme_sender, status=LOCKED, attempts_used=5, sms=[("undeliverable", "afritel", 1)])
    session(globex_sender, country="KE", status=APPROVED, sms=[("sent", "default", 1)])
    session(acme_sender, status=APPROVED, is_test=True, sms=[("delivered", "", 1)])
    session(acme_sender, status=APPROVED, created_at=ago(days=3), sms=[("delivered", "afritel", 1)])
    session(acme_sender, created_at=ago(days=3), sms=[("delivered", "afritel", 1)])
    traffic_rollup_refresh()


def dashboard_tables(client, **query) -> dict:
    response = client.get(reverse("admin:index"), query)
    assert response.status_code == 200
    return tables_of(response.text)


# --- Who sees it -------------------------------------------------------------------------------------------


def test_the_dashboard_is_on_the_admin_index_for_staff(admin_client, history):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert 'id="cockpit-dashboard"' in response.text and 'id="cockpit-chart-data"' in response.text
    # The chart library comes from the service itself, never a CDN: the admin works offline.
    assert "cockpit/vendor/chart.js-4.6.1/chart.umd.min.js" in response.text
    assert "cdn" not in response.text.lower() and "https://" not in response.text
    assert "<title>Operations | Zeckta OTP</title>" in response.text
    assert '<div id="site-name"><a href="/admin/">Zeckta OTP</a></div>' in response.text


def test_anonymous_users_are_sent_to_the_login_page(client, history):
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert "cockpit" not in client.get(response["Location"]).text.split('id="content"')[1]


def test_staff_without_the_view_permission_get_the_index_without_the_numbers(client, history):
    user = get_user_model().objects.create_user("clerk", password="clerk-password", is_staff=True)
    client.force_login(user)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 200 and 'id="cockpit-dashboard"' not in response.text
    assert "Operator guide" in response.text  # the guide is for every operator

    user.user_permissions.add(Permission.objects.get(codename="view_traffichour"))
    client.force_login(get_user_model().objects.get(pk=user.pk))
    assert 'id="cockpit-dashboard"' in client.get(reverse("admin:index")).text


def test_the_chart_library_is_served_with_its_licence(client):
    for path in ("cockpit/vendor/chart.js-4.6.1/chart.umd.min.js", "cockpit/vendor/chart.js-4.6.1/LICENSE.md"):
        assert (settings.BASE_DIR / "cockpit" / "static" / path).stat().st_size > 1000
    licence = (settings.BASE_DIR / "cockpit/static/cockpit/vendor/chart.js-4.6.1/LICENSE.md").read_text()
    assert "MIT License" in licence


# --- Its numbers -------------------------------------------------------------------------------------------


def test_the_totals_are_right_for_a_known_history(admin_client, history):
    totals = dashboard_tables(admin_client)["cockpit-totals"]
    assert numbers(totals["24h"], *COUNTS) == ("5", "3", "50.0 %", "7", "6", "2", "33.3 %", "3", "5")
    assert numbers(totals["30d"], *COUNTS) == ("7", "4", "50.0 %", "7", "8", "4", "50.0 %", "3", "7")


def test_the_breakdowns_by_workspace_route_and_country_are_right(admin_client, history):
    tables = dashboard_tables(admin_client)
    by_workspace = tables["cockpit-by-workspace"]
    assert list(by_workspace) == ["acme", "globex"]  # the most SMS first
    assert numbers(by_workspace["acme"], *COUNTS) == ("4", "2", "40.0 %", "7", "5", "2", "40.0 %", "3", "4")
    assert numbers(by_workspace["globex"], *COUNTS) == ("1", "1", "100.0 %", "0", "1", "0", "0.0 %", "0", "1")

    by_route = tables["cockpit-by-route"]
    # Sessions count under the route of their latest SMS, each SMS under its own: the resent session's first
    # SMS expired before any route took it.
    assert numbers(by_route["afritel"], *COUNTS) == ("3", "2", "66.7 %", "5", "3", "2", "66.7 %", "1", "4")
    assert numbers(by_route["default"], *COUNTS) == ("2", "1", "50.0 %", "2", "2", "0", "0.0 %", "1", "1")
    assert numbers(by_route[""], "requests", "sms", "failed", "units") == ("0", "1", "1", "0")
    assert by_route["default"]["label"] == "default (the SMS_BACKEND settings)"

    by_country = tables["cockpit-by-country"]
    assert by_country["GH"]["label"] == "GH Ghana"
    assert numbers(by_country["GH"], *COUNTS) == ("3", "2", "50.0 %", "5", "4", "2", "50.0 %", "2", "4")
    assert numbers(by_country["NG"], *COUNTS) == ("1", "0", "0.0 %", "2", "1", "0", "0.0 %", "1", "0")
    assert numbers(by_country["KE"], *COUNTS) == ("1", "1", "100.0 %", "0", "1", "0", "0.0 %", "0", "1")


def test_the_30_day_window_adds_the_older_sessions(admin_client, history):
    tables = dashboard_tables(admin_client, window="30d")
    assert numbers(tables["cockpit-by-workspace"]["acme"], *COUNTS) == (
        "6",
        "3",
        "42.9 %",
        "7",
        "7",
        "4",
        "57.1 %",
        "3",
        "6",
    )
    assert numbers(tables["cockpit-by-route"]["afritel"], "requests", "approved", "sms") == ("5", "3", "5")
    assert numbers(tables["cockpit-totals"]["24h"], "requests") == ("5",)  # both windows, whichever is chosen


def test_the_charts_draw_the_same_numbers(admin_client, history):
    response = admin_client.get(reverse("admin:index"))
    data = response.context["dashboard"].chart_data()
    assert len(data["hourly"]["labels"]) == 24 and len(data["daily"]["labels"]) == 30
    assert sum(data["hourly"]["sms"]) == 6 and sum(data["hourly"]["approved"]) == 3
    assert sum(data["daily"]["sms"]) == 8 and sum(data["daily"]["requests"]) == 7
    assert data["daily"]["conversion"][-4] == 50.0  # three days ago: one of two SMS approved


def test_the_rows_link_to_their_admin_pages(admin_client, history):
    text = admin_client.get(reverse("admin:index")).text
    acme = OtpSession.objects.filter(workspace__slug="acme").first().workspace
    assert reverse("admin:workspaces_workspace_change", args=[acme.pk]) in text
    assert reverse("admin:senders_route_changelist") in text  # afritel's page is under it


# --- SMS pumping -------------------------------------------------------------------------------------------


@pytest.fixture
def pumping():
    """Within the last day: 25 SMS over one range of 1,000 numbers with one approval; 6 to one number and
    none approved; 6 to another, 5 of them approved. Two days ago: 6 to a third number, none approved.
    And test-mode SMS, never counted. The workspace's fraud guard is off: the cockpit's flags are all it has."""
    workspace = WorkspaceFactory(name="Pumped", slug="pumped", fraud_guard_mode="off")
    sender = SenderNameFactory(workspace=workspace, name="PUMPED")
    for index in range(25):
        session(
            sender,
            dest=f"+233202007{index:03d}",
            status=APPROVED if index == 0 else EXPIRED,
            created_at=ago(minutes=5 * index + 1),
            sms=[("sent", "default", 1)],
        )
    for index in range(6):
        session(sender, dest="+233240000001", created_at=ago(hours=index + 1), sms=[("sent", "default", 1)])
        session(
            sender,
            dest="+233240000002",
            status=APPROVED if index else EXPIRED,
            created_at=ago(hours=index + 1),
            sms=[("delivered", "default", 1)],
        )
        session(sender, dest="+233240000003", created_at=ago(days=2, hours=index), sms=[("sent", "default", 1)])
    for _ in range(10):
        session(sender, dest="+233240000009", is_test=True, created_at=ago(hours=1), sms=[("delivered", "", 1)])
    traffic_rollup_refresh()
    return sender.workspace


def test_pumping_flags_fire_for_many_sms_and_few_approvals(admin_client, pumping):
    suspects = {(s.kind, s.number): (s.sms, s.approved, s.numbers, s.flagged) for s in NumberSuspect.objects.all()}
    assert suspects == {
        ("range", "+233202007"): (25, 1, 25, True),  # 4 % converted
        ("destination", "+233240000001"): (6, 0, 1, True),
        ("destination", "+233240000002"): (6, 5, 1, False),  # a real user's retries, nearly all approved
    }

    tables = dashboard_tables(admin_client)
    ranges, destinations = tables["cockpit-suspect-ranges"], tables["cockpit-suspect-destinations"]
    assert ranges["+233202007"]["label"] == "+233202007xxx"
    assert numbers(ranges["+233202007"], "sms", "approved", "conversion") == ("25", "1", "4.0 %")
    assert list(destinations) == ["+233240000001", "+233240000002"]  # the flagged first
    html = admin_client.get(reverse("admin:index")).text
    assert html.count('class="cockpit-flagged"') == 2 and "2 flagged" in html


@pytest.mark.parametrize("mode", ["enforce", "shadow"])
def test_with_the_guard_on_its_ranges_are_left_to_the_guard_and_single_numbers_still_flagged(
    admin_client, pumping, mode
):
    """The guard's range rules watch the range (its blocks and shadow decisions are listed above the flags); no
    rule of the guard judges one number, so the destinations stay flagged."""
    Workspace.objects.filter(pk=pumping.pk).update(fraud_guard_mode=mode)

    tables = dashboard_tables(admin_client)

    assert tables["cockpit-suspect-ranges"] == {}
    assert list(tables["cockpit-suspect-destinations"]) == ["+233240000001", "+233240000002"]
    assert "1 flagged" in admin_client.get(reverse("admin:index")).text


def test_the_dashboard_lists_the_active_blocks_and_the_recent_shadow_decisions(admin_client, history):
    acme, globex = Workspace.objects.get(slug="acme"), Workspace.objects.get(slug="globex")
    FraudBlockFactory(
        workspace=acme,
        value="+233204123",
        rule="range_conversion",
        evidence={"sessions": 24, "converted": 1, "numbers": 20},
    )
    FraudBlockFactory(workspace=acme, scope="country", value="NG", rule="country_velocity", created_at=ago(minutes=3))
    FraudBlockFactory(workspace=acme, value="+233204555", lifted_at=timezone.now(), lifted_by="ops")  # lifted
    FraudBlockFactory(workspace=acme, value="+233204777", created_at=ago(hours=3), ends_at=ago(hours=2))  # ended
    FraudBlockFactory(workspace=globex, value="+254711222", mode="shadow")
    FraudBlockFactory(workspace=globex, value="+254711999", mode="shadow", created_at=ago(hours=30))  # too old

    tables = dashboard_tables(admin_client)

    active = tables["cockpit-blocks-active"]
    assert list(active) == ["+233204123", "NG"]  # the newest first; lifted and ended ones are not in force
    assert active["+233204123"]["label"] == "+233204123xxx" and active["NG"]["label"] == "NG Nigeria"
    assert numbers(active["+233204123"], "rule", "workspace", "sessions", "converted", "numbers") == (
        "range_conversion",
        "Acme",
        "24",
        "1",
        "20",
    )
    shadow = tables["cockpit-blocks-shadow"]
    assert list(shadow) == ["+254711222"] and shadow["+254711222"]["workspace"] == "Globex"
    html = admin_client.get(reverse("admin:index")).text
    block = FraudBlock.objects.get(value="+233204123")
    assert reverse("admin:fraud_fraudblock_change", args=[block.pk]) in html  # where it is lifted
    assert "(2 active blocks)" in html


def test_without_blocks_the_dashboard_says_so(admin_client, history):
    html = admin_client.get(reverse("admin:index")).text
    assert "No range or country is blocked now." in html and "(0 active blocks)" in html


def test_pumping_thresholds_are_settings(admin_client, pumping, settings):
    settings.COCKPIT_PUMPING_MAX_CONVERSION = 0.0
    settings.COCKPIT_PUMPING_MIN_SMS_PER_RANGE = 30
    traffic_rollup_refresh()
    flagged = set(NumberSuspect.objects.filter(flagged=True).values_list("number", flat=True))
    assert flagged == {"+233240000001"}
    assert not NumberSuspect.objects.filter(kind="range").exists()


# --- Its cost ----------------------------------------------------------------------------------------------


def test_the_dashboard_costs_a_bounded_number_of_queries(admin_client, history, django_assert_max_num_queries):
    admin_client.get(reverse("admin:index"))  # the session and the user, loaded once per request anyway
    with django_assert_max_num_queries(12):
        admin_client.get(reverse("admin:index"))
    # Many more workspaces, routes and countries: more rollup rows, not more queries.
    for index in range(8):
        sender = SenderNameFactory(workspace=WorkspaceFactory())
        route_create(name=f"route-{index}", backend="http", values={"url": "http://127.0.0.1:9/sms"})
        for country in ("GH", "NG", "KE"):
            session(sender, country=country, status=APPROVED, sms=[("delivered", f"route-{index}", 1)])
    traffic_rollup_refresh()
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:index"), {"window": "30d"})
    assert len(tables_of(response.text)["cockpit-by-workspace"]) == 10


# --- The rollup --------------------------------------------------------------------------------------------


def test_the_rollup_leaves_out_test_mode_and_counts_each_hour_once(history):
    assert not TrafficHour.objects.filter(approved__gt=0, route_name="").exists()  # the test session
    before = list(TrafficHour.objects.order_by("hour", "workspace", "country", "route_name").values())
    traffic_rollup_refresh()
    after = list(TrafficHour.objects.order_by("hour", "workspace", "country", "route_name").values())
    assert [{**row, "id": 0} for row in before] == [{**row, "id": 0} for row in after]


def test_a_refresh_rebuilds_the_recent_hours_and_keeps_older_ones_after_the_purge(history):
    state = RollupState.objects.get()
    assert state.rebuilt_from <= ago(days=settings.COCKPIT_ROLLUP_BACKFILL_DAYS) + timedelta(hours=1)  # backfill
    three_days_ago = TrafficHour.objects.filter(hour__lt=ago(days=2)).values_list("requests", flat=True)
    assert sum(three_days_ago) == 2

    OtpSession.objects.filter(created_at__lt=ago(days=2)).delete()  # the sessions' purge, in short
    OtpSession.objects.filter(created_at__gt=ago(days=1), country="KE").update(status=EXPIRED)
    result = traffic_rollup_refresh()

    assert result.hours == settings.COCKPIT_ROLLUP_RECENT_HOURS + 1
    assert sum(TrafficHour.objects.filter(hour__lt=ago(days=2)).values_list("requests", flat=True)) == 2
    assert TrafficHour.objects.get(country="KE").approved == 0  # a recent hour, rebuilt


def test_every_quarter_of_an_hour_a_run_rebuilds_what_may_still_change(history):
    assert traffic_rollup_refresh().hours == settings.COCKPIT_ROLLUP_RECENT_HOURS + 1
    # A receipt for an SMS of yesterday: only a settling run sees it.
    yesterday = OtpSessionFactory(sender_name=OtpSession.objects.first().sender_name, created_at=ago(hours=20))
    SmsMessageFactory(session=yesterday, status="delivered", route_name="afritel")
    traffic_rollup_refresh()
    assert not TrafficHour.objects.filter(hour__lt=ago(hours=19), hour__gt=ago(hours=21)).exists()

    RollupState.objects.update(settled_at=ago(seconds=settings.COCKPIT_ROLLUP_SETTLE_EVERY_SECONDS + 1))
    assert traffic_rollup_refresh().hours == settings.COCKPIT_ROLLUP_SETTLE_HOURS + 1
    assert TrafficHour.objects.get(hour__lt=ago(hours=19), hour__gt=ago(hours=21)).delivered == 1
    assert traffic_rollup_refresh().hours == settings.COCKPIT_ROLLUP_RECENT_HOURS + 1  # settled for a while


def test_a_run_after_beat_stood_still_rebuilds_from_its_last_run(history):
    RollupState.objects.update(refreshed_at=ago(days=5))
    assert traffic_rollup_refresh().rebuilt_from <= ago(days=5, hours=settings.COCKPIT_ROLLUP_RECENT_HOURS)


def test_a_backfill_past_its_time_budget_goes_on_at_the_next_run_and_ends_as_one_run_would(history):
    """A month's backfill on a large database is spread over beat's runs, a chunk of hours to a transaction; each
    run starts where the last stopped, and the rows at the end are those of one uninterrupted run."""
    whole = list(TrafficHour.objects.order_by("hour", "workspace", "country", "route_name").values_list())
    TrafficHour.objects.all().delete()
    RollupState.objects.all().delete()
    chunk = timedelta(hours=settings.COCKPIT_ROLLUP_CHUNK_HOURS)

    first = traffic_rollup_refresh(budget_seconds=0)  # one chunk, then the budget is spent
    assert not first.complete and first.hours == settings.COCKPIT_ROLLUP_CHUNK_HOURS
    assert RollupState.objects.get().resume_from == first.rebuilt_from + chunk
    assert RollupState.objects.get().refreshed_at == first.rebuilt_from + chunk  # the dashboard's "as of"

    runs = [first]
    while not runs[-1].complete:
        runs.append(traffic_rollup_refresh(budget_seconds=0))
        assert runs[-1].rebuilt_from == runs[-2].rebuilt_from + chunk  # from where the last one stopped
    assert len(runs) == math.ceil((runs[-1].rebuilt_from - first.rebuilt_from) / chunk) + 1
    after = list(TrafficHour.objects.order_by("hour", "workspace", "country", "route_name").values_list())
    assert [row[1:] for row in after] == [row[1:] for row in whole]
    assert RollupState.objects.get().resume_from is None
    assert traffic_rollup_refresh().hours == settings.COCKPIT_ROLLUP_RECENT_HOURS + 1  # then the usual runs


def test_a_rebuild_asked_for_while_a_backfill_is_stopped_starts_no_later_than_where_it_stopped(history):
    RollupState.objects.update(resume_from=hour_floor(ago(days=5)))  # a backfill stopped at its budget
    result = traffic_rollup_refresh(rebuild_from=ago(days=1))  # manage.py refresh_dashboard --days 1
    assert result.rebuilt_from == hour_floor(ago(days=5)) and result.complete
    assert RollupState.objects.get().resume_from is None


def test_beat_runs_the_rollup_every_minute():
    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == TRAFFIC_ROLLUP_REFRESH_TASK]
    assert entry["schedule"] == 60.0 and TRAFFIC_ROLLUP_REFRESH_TASK in celery_app.tasks


def test_the_command_rebuilds_now(history):
    TrafficHour.objects.all().delete()
    out = run_command("refresh_dashboard", "--days", "5")[-1]
    assert out.startswith("rebuilt ") and " hours from " in out
    assert TrafficHour.objects.filter(hour__lt=ago(days=2)).exists()


def test_a_never_computed_dashboard_says_how_to_compute_it(admin_client):
    text = admin_client.get(reverse("admin:index")).text
    assert "Never computed" in text and "manage.py refresh_dashboard" in text
