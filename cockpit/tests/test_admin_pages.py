"""The rest of the cockpit: the operator guide, the branding, and the traffic on workspace and route pages."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from cockpit.models import NumberSuspect
from cockpit.services import traffic_rollup_refresh
from cockpit.tests.helpers import numbers, tables_of
from otp.models import SmsAttempt
from otp.tests.factories import OtpSessionFactory, SmsMessageFactory
from senders.models import Route
from senders.routes import route_create
from senders.tests.factories import SenderNameFactory

pytestmark = pytest.mark.django_db

GUIDE_SECTIONS = (
    "approve-a-sender",
    "issue-a-key",
    "revoke-a-key",
    "add-a-route",
    "credit-a-balance",
    "texts",
    "no-sms",
    "fraud-guard",
    "pumping",
)


@pytest.fixture
def route() -> Route:
    return route_create(name="afritel", backend="http", values={"url": "http://127.0.0.1:9/sms"}, countries="GH")


@pytest.fixture
def traffic(workspace, route):
    """Two sessions of `workspace` in the last hour through `route`: one approved, one not; with attempts."""
    sender = SenderNameFactory(workspace=workspace, name="ACME")
    now = timezone.now()
    for status, sms_status in (("APPROVED", "delivered"), ("EXPIRED", "undeliverable")):
        session = OtpSessionFactory(sender_name=sender, status=status, created_at=now - timedelta(hours=1))
        message = SmsMessageFactory(session=session, status=sms_status, route_name="afritel", route_key="r")
        SmsAttempt.objects.create(
            message=message,
            route=route,
            route_key="r",
            route_name="afritel",
            status=sms_status,
            provider_message_id=f"pm-{status}",
            error_code="27" if sms_status == "undeliverable" else "",
            started_at=message.created_at,
            finished_at=message.created_at,
        )
    traffic_rollup_refresh()


def test_the_guide_covers_the_daily_tasks(admin_client):
    response = admin_client.get(reverse("admin:guide"))
    assert response.status_code == 200
    for section in GUIDE_SECTIONS:
        assert f'id="{section}"' in response.text
    # Each task links to the page that does it.
    for name in (
        "admin:senders_sendername_changelist",
        "admin:workspaces_apikey_add",
        "admin:senders_route_add",
        "admin:workspaces_workspace_changelist",
        "admin:otp_otpsession_changelist",
        "admin:fraud_fraudblock_changelist",
    ):
        assert reverse(name) in response.text
    assert "<title>Operator guide | Zeckta OTP</title>" in response.text


def test_the_guide_is_reachable_from_the_index_and_every_page(admin_client, workspace):
    guide = reverse("admin:guide")
    assert f'href="{guide}#no-sms"' in admin_client.get(reverse("admin:index")).text
    page = admin_client.get(reverse("admin:workspaces_workspace_change", args=[workspace.pk])).text
    assert f'<a href="{guide}">Operator guide</a>' in page


def test_the_guide_is_for_staff_only(client):
    response = client.get(reverse("admin:guide"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))


def test_the_login_page_says_zeckta(client):
    text = client.get(reverse("admin:login")).text
    assert "Zeckta OTP" in text and "Django administration" not in text


def test_a_workspace_page_shows_its_traffic_and_the_list_its_last_day(admin_client, workspace, traffic):
    page = admin_client.get(reverse("admin:workspaces_workspace_change", args=[workspace.pk]))
    tables = tables_of(page.text)
    assert numbers(tables["cockpit-totals"]["24h"], "requests", "approved", "sms", "delivered", "conversion") == (
        "2",
        "1",
        "2",
        "1",
        "50.0 %",
    )
    assert numbers(tables["cockpit-by-route"]["afritel"], "sms", "failed") == ("2", "1")

    listing = admin_client.get(reverse("admin:workspaces_workspace_changelist")).text
    row = re.search(r"<tr>.*?acme.*?</tr>", listing, re.S).group()
    assert '<td class="field-sms_24h">2</td>' in row and '<td class="field-conversion_24h">50.0 %</td>' in row
    assert admin_client.get(reverse("admin:workspaces_workspace_add")).status_code == 200  # no traffic to add


def test_a_route_page_shows_its_traffic_and_its_latest_attempts(admin_client, route, traffic):
    page = admin_client.get(reverse("admin:senders_route_change", args=[route.pk])).text
    assert numbers(tables_of(page)["cockpit-totals"]["24h"], "sms", "delivered", "delivery_rate") == (
        "2",
        "1",
        "50.0 %",
    )
    assert "pm-APPROVED" in page and "pm-EXPIRED" in page and "undeliverable" in page
    assert 'name="new_settings"' in page and ">null</textarea>" not in page  # write-only: it starts empty

    listing = admin_client.get(reverse("admin:senders_route_changelist")).text
    assert '<td class="field-sms_24h">2</td>' in listing and '<td class="field-delivery_24h">50.0 %</td>' in listing
    assert admin_client.get(reverse("admin:senders_route_add")).status_code == 200


def staff_client(client, *codenames: str):
    """A logged-in staff user with only these permissions (a new login: permissions are cached on the user)."""
    user = get_user_model().objects.create_user("clerk", password="clerk-password", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def grant(client, user, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(get_user_model().objects.get(pk=user.pk))


def test_a_workspace_page_shows_traffic_and_pumping_only_with_the_dashboard_permission(client, workspace, traffic):
    NumberSuspect.objects.create(
        kind=NumberSuspect.Kind.DESTINATION,
        workspace=workspace,
        country="GH",
        number="+233240000001",
        sms=6,
        approved=0,
        flagged=True,
        first_sms_at=timezone.now(),
        last_sms_at=timezone.now(),
    )
    user = staff_client(client, "view_workspace", "change_workspace", "add_workspace")
    change = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    listing = reverse("admin:workspaces_workspace_changelist")

    page, rows = client.get(change), client.get(listing)
    assert page.status_code == 200 and rows.status_code == 200 and 'name="name"' in page.text
    for text in (page.text, rows.text):
        assert "cockpit-traffic" not in text and "cockpit-totals" not in text and "Suspected SMS pumping" not in text
        assert "field-sms_24h" not in text and "field-conversion_24h" not in text and "+233240000001" not in text
    assert client.get(reverse("admin:workspaces_workspace_add")).status_code == 200

    grant(client, user, "view_traffichour")
    page, rows = client.get(change).text, client.get(listing).text
    assert numbers(tables_of(page)["cockpit-totals"]["24h"], "requests", "sms") == ("2", "2")
    assert "Suspected SMS pumping" in page and "+233240000001" in page
    assert '<td class="field-sms_24h">2</td>' in rows


def test_a_route_page_shows_traffic_and_attempts_only_with_their_permissions(client, route, traffic):
    user = staff_client(client, "view_route", "change_route")
    change = reverse("admin:senders_route_change", args=[route.pk])
    listing = reverse("admin:senders_route_changelist")

    page, rows = client.get(change), client.get(listing)
    assert page.status_code == 200 and rows.status_code == 200 and 'name="priority"' in page.text
    for text in (page.text, rows.text):
        assert "cockpit-totals" not in text and "field-sms_24h" not in text and "field-delivery_24h" not in text
        assert "pm-APPROVED" not in text and "Latest attempts" not in text

    grant(client, user, "view_traffichour")
    page, rows = client.get(change).text, client.get(listing).text
    assert "cockpit-totals" in page and '<td class="field-sms_24h">2</td>' in rows
    assert "pm-APPROVED" not in page  # the SMS (and their numbers) need their own permission

    grant(client, user, "view_smsmessage")
    assert "pm-APPROVED" in client.get(change).text
