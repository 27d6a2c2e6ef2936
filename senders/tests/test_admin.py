"""The sender-name admin: review queue, approval and rejection through the services."""

import pytest
from django.urls import reverse

from senders.models import SenderName
from senders.tests.factories import SenderNameFactory
from workspaces.tests.factories import WorkspaceFactory


@pytest.fixture
def changelist_url() -> str:
    return reverse("admin:senders_sendername_changelist")


@pytest.fixture
def queue(workspace):
    other = WorkspaceFactory(slug="globex")
    return {
        "approved": SenderNameFactory(workspace=workspace, name="ZECKTA"),
        "pending": SenderNameFactory(workspace=workspace, name="ACMEPAY", status="PENDING", approved_at=None),
        "shortcode": SenderNameFactory(
            workspace=other, name="4040", sender_type="shortcode", status="PENDING", approved_at=None
        ),
    }


def senders_listed(client, url: str, query: dict) -> set[str]:
    response = client.get(url, query)
    assert response.status_code == 200
    return {sender_name.name for sender_name in response.context["cl"].result_list}


def test_changelist_search_and_filters(admin_client, changelist_url, queue, workspace):
    page = admin_client.get(changelist_url)
    assert page.status_code == 200
    assert all(sender_name.name in page.text for sender_name in queue.values())
    assert senders_listed(admin_client, changelist_url, {"q": "acme"}) == {"ACMEPAY", "ZECKTA"}  # by slug too
    assert senders_listed(admin_client, changelist_url, {"q": "globex"}) == {"4040"}
    assert senders_listed(admin_client, changelist_url, {"q": "zeck"}) == {"ZECKTA"}
    assert senders_listed(admin_client, changelist_url, {"status__exact": "PENDING"}) == {"ACMEPAY", "4040"}
    assert senders_listed(admin_client, changelist_url, {"sender_type__exact": "shortcode"}) == {"4040"}
    assert senders_listed(admin_client, changelist_url, {"workspace__id__exact": workspace.pk}) == {"ACMEPAY", "ZECKTA"}


def test_change_page_shows_the_status_read_only(admin_client, queue):
    page = admin_client.get(reverse("admin:senders_sendername_change", args=[queue["pending"].pk]))
    assert page.status_code == 200
    assert "ACMEPAY" in page.text and str(queue["pending"].public_id) in page.text
    assert 'name="status"' not in page.text and 'name="name"' not in page.text


def test_adding_a_sender_goes_through_the_service(admin_client, workspace):
    url = reverse("admin:senders_sendername_add")
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(
        url,
        {
            "workspace": workspace.pk,
            "name": "ACME",
            "sender_type": "alphanumeric",
            "purpose": "Logins",
            "country_code": "gh",
        },
    )
    assert response.status_code == 302
    sender_name = SenderName.objects.get()
    assert (sender_name.name, sender_name.status, sender_name.country_code) == ("ACME", "PENDING", "GH")


@pytest.mark.parametrize("sender, sender_type", [("A!", "alphanumeric"), ("0202007745", "msisdn"), ("12", "shortcode")])
def test_adding_an_invalid_sender_shows_the_service_rule_and_creates_nothing(
    admin_client, workspace, sender, sender_type
):
    response = admin_client.post(
        reverse("admin:senders_sendername_add"), {"workspace": workspace.pk, "name": sender, "sender_type": sender_type}
    )
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors
    assert not SenderName.objects.exists()


def test_adding_a_duplicate_sender_is_a_form_error(admin_client, queue, workspace):
    response = admin_client.post(
        reverse("admin:senders_sendername_add"),
        {"workspace": workspace.pk, "name": "ZECKTA", "sender_type": "alphanumeric"},
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert SenderName.objects.filter(name="ZECKTA").count() == 1


def test_approve_selected_approves_through_the_service(admin_client, changelist_url, queue):
    response = admin_client.post(
        changelist_url,
        {"action": "approve_selected", "_selected_action": [queue["pending"].pk, queue["shortcode"].pk]},
        follow=True,
    )
    assert response.status_code == 200 and "Approved 2 sender name(s)" in response.text
    for key in ("pending", "shortcode"):
        queue[key].refresh_from_db()
        assert queue[key].status == "APPROVED" and queue[key].approved_at is not None


def test_reject_selected_asks_for_a_reason_then_rejects(admin_client, changelist_url, queue):
    selected = {"action": "reject_selected", "_selected_action": [queue["approved"].pk, queue["pending"].pk]}
    ask = admin_client.post(changelist_url, selected)
    assert ask.status_code == 200 and 'name="reason"' in ask.text and "ZECKTA" in ask.text

    blank = admin_client.post(changelist_url, {**selected, "apply": "yes", "reason": "   "})
    assert blank.status_code == 200 and 'name="reason"' in blank.text
    assert SenderName.objects.filter(status="REJECTED").count() == 0

    done = admin_client.post(changelist_url, {**selected, "apply": "yes", "reason": "Brand not verified"}, follow=True)
    assert done.status_code == 200 and "Rejected 2 sender name(s)" in done.text
    for key in ("approved", "pending"):
        queue[key].refresh_from_db()
        assert (queue[key].status, queue[key].status_reason, queue[key].approved_at) == (
            "REJECTED",
            "Brand not verified",
            None,
        )
    queue["shortcode"].refresh_from_db()
    assert queue["shortcode"].status == "PENDING"


def test_a_route_is_added_in_the_admin_with_write_only_settings(admin_client):
    import json as json_module

    from senders.models import Route
    from senders.routes import route_settings

    url = reverse("admin:senders_route_add")
    settings_json = json_module.dumps({"account_sid": "AC123", "auth_token": "super-secret-token"})
    response = admin_client.post(
        url,
        {
            "name": "twilio-1",
            "backend": "twilio",
            "new_settings": settings_json,
            "countries": "gh, ng",
            "priority": "5",
            "rate_per_second": "",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    route = Route.objects.get()
    assert (route.countries, route.priority) == ("GH,NG", 5)
    assert route_settings(route)["auth_token"] == "super-secret-token"

    change = admin_client.get(reverse("admin:senders_route_change", args=[route.pk]))
    assert change.status_code == 200 and "super-secret-token" not in change.text
    assert f"/v1/webhooks/sms/{route.public_id}" in change.text

    missing = admin_client.post(
        url,
        {
            "name": "twilio-2",
            "backend": "twilio",
            "new_settings": "{}",
            "countries": "",
            "priority": "1",
            "enabled": "on",
        },
    )
    assert missing.status_code == 200 and "account_sid" in str(missing.context["adminform"].form.errors)
    assert Route.objects.count() == 1
