"""The webhooks admin: endpoints (the secret shown once, on creation), their deliveries, replay."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from webhooks.delivery import webhook_deliver
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tests.factories import endpoint_for, record_event
from workspaces.models import AuditEvent
from workspaces.tests.factories import WorkspaceFactory

ENDPOINTS = "admin:webhooks_webhookendpoint_changelist"
DELIVERIES = "admin:webhooks_webhookdelivery_changelist"


def listed(client, query: dict) -> set[str]:
    response = client.get(reverse(ENDPOINTS), query)
    assert response.status_code == 200
    return {endpoint.url for endpoint in response.context["cl"].result_list}


def test_the_endpoint_list_filters_and_searches_and_never_shows_a_secret(admin_client, workspace):
    mine = endpoint_for(workspace, "https://acme.example.com/hooks")
    theirs = endpoint_for(WorkspaceFactory(slug="globex"), "https://globex.example.com/hooks")
    WebhookEndpoint.objects.filter(pk=theirs.endpoint.pk).update(failing_since=timezone.now())

    page = admin_client.get(reverse(ENDPOINTS))

    assert mine.secret not in page.text and theirs.secret not in page.text
    assert listed(admin_client, {"q": "globex"}) == {"https://globex.example.com/hooks"}
    assert listed(admin_client, {"q": "acme"}) == {"https://acme.example.com/hooks"}
    assert listed(admin_client, {"failing": "yes"}) == {"https://globex.example.com/hooks"}
    assert listed(admin_client, {"failing": "no"}) == {"https://acme.example.com/hooks"}
    assert listed(admin_client, {"workspace__id__exact": workspace.pk}) == {"https://acme.example.com/hooks"}


def test_an_endpoints_page_shows_its_recent_deliveries_and_only_the_secret_prefix(admin_client, workspace, receiver):
    created = endpoint_for(workspace, receiver.url)
    receiver.reply(500)
    [delivery] = record_event(workspace)
    webhook_deliver(delivery_id=delivery.pk)

    page = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[created.endpoint.pk]))

    assert page.status_code == 200
    assert created.secret not in page.text and created.secret[:10] in page.text
    assert delivery.webhook_id in page.text and "HTTP 500" in page.text and 'name="url"' not in page.text


def test_staff_create_an_endpoint_and_see_its_secret_once(admin_client, workspace):
    response = admin_client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {"workspace": workspace.pk, "url": "https://example.com/hooks", "events": ["otp.approved", "otp.sent"]},
    )

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.workspace, endpoint.events) == (workspace, ["otp.approved", "otp.sent"])
    secret = response.context["secret"]
    assert secret.startswith("whsec_") and secret in response.text
    assert AuditEvent.objects.get(action="webhook.created").actor == "admin"
    assert secret not in admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])).text


def test_the_admin_form_refuses_what_the_api_refuses(admin_client, workspace):
    response = admin_client.post(
        reverse("admin:webhooks_webhookendpoint_add"),
        {"workspace": workspace.pk, "url": "http://example.com/hooks", "events": ["otp.approved"]},
    )

    assert response.status_code == 200 and "The URL must use https." in response.text
    assert not WebhookEndpoint.objects.exists()


def test_mark_not_failing_and_delete_go_through_the_services(admin_client, workspace):
    endpoint = endpoint_for(workspace, "https://example.com/hooks").endpoint
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=timezone.now())

    admin_client.post(reverse(ENDPOINTS), {"action": "mark_not_failing", "_selected_action": [endpoint.pk]})
    endpoint.refresh_from_db()
    assert not endpoint.failing
    admin_client.post(reverse(ENDPOINTS), {"action": "delete_selected_endpoints", "_selected_action": [endpoint.pk]})

    assert not WebhookEndpoint.objects.exists()
    assert set(AuditEvent.objects.values_list("action", flat=True)) >= {"webhook.changed", "webhook.deleted"}


def test_test_endpoints_are_shown_filtered_and_deleted_like_live_ones(admin_client, workspace):
    endpoint_for(workspace, "https://live.example.com/hooks")
    test = endpoint_for(workspace, "https://test.example.com/hooks", test=True).endpoint

    page = admin_client.get(reverse(ENDPOINTS))
    assert "test endpoint" in page.text.lower()  # the column
    assert listed(admin_client, {"is_test__exact": "1"}) == {"https://test.example.com/hooks"}
    assert listed(admin_client, {"is_test__exact": "0"}) == {"https://live.example.com/hooks"}
    detail = admin_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[test.pk]))
    assert detail.status_code == 200 and "test endpoint" in detail.text.lower()

    admin_client.post(reverse(ENDPOINTS), {"action": "delete_selected_endpoints", "_selected_action": [test.pk]})
    admin_client.post(reverse("admin:webhooks_webhookendpoint_delete", args=[test.pk]), {"post": "yes"})

    assert list(WebhookEndpoint.objects.values_list("url", flat=True)) == ["https://live.example.com/hooks"]
    assert AuditEvent.objects.filter(action="webhook.deleted", target=str(test.public_id)).count() == 1


def test_replay_sends_a_finished_delivery_again_with_the_same_webhook_id(admin_client, workspace, receiver):
    endpoint_for(workspace, receiver.url)
    [delivery] = record_event(workspace)
    webhook_deliver(delivery_id=delivery.pk)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(retry_until=timezone.now() - timedelta(hours=1))

    response = admin_client.post(reverse(DELIVERIES), {"action": "replay", "_selected_action": [delivery.pk]})

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.finished_at is None
    assert delivery.retry_until > timezone.now() + timedelta(hours=23)  # a fresh retry window
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.webhook_id
    assert first.body == second.body
    audit = AuditEvent.objects.get(action="webhook.replayed")
    assert audit.detail["webhook_id"] == delivery.webhook_id and audit.actor == "admin"


def test_a_delivery_under_way_is_not_replayed(admin_client, workspace):
    endpoint_for(workspace, "https://example.com/hooks")
    [delivery] = record_event(workspace)

    admin_client.post(reverse(DELIVERIES), {"action": "replay", "_selected_action": [delivery.pk]})

    assert not AuditEvent.objects.filter(action="webhook.replayed").exists()


@pytest.mark.parametrize("name", ["webhooks_webhookdelivery_changelist", "webhooks_webhookendpoint_add"])
def test_the_pages_render(admin_client, workspace, name):
    endpoint_for(workspace, "https://example.com/hooks")
    record_event(workspace)
    assert admin_client.get(reverse(f"admin:{name}")).status_code == 200
