"""The webhooks API (API.md section 9) over HTTP: scoped to the caller's workspace, enveloped, the secret
shown only in the answers that make one."""

import base64
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from webhooks.models import WebhookEndpoint
from webhooks.services import webhook_endpoint_create
from workspaces.models import AuditEvent
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import api_client, assert_api_error

URL = "/v1/messaging/webhooks"
FIELDS = {"webhookId", "url", "events", "createdAt", "failing"}
HOOK = "https://example.com/webhooks/zeckta"


def detail_url(webhook_id) -> str:
    return f"{URL}/{webhook_id}"


def create(api, url: str = HOOK, events: list[str] | None = None):
    return api.post(URL, {"url": url, "events": events or ["otp.approved", "otp.delivery_failed"]}, format="json")


@pytest.fixture
def other_api(db):
    return api_client(issue_key(WorkspaceFactory(name="Other", slug="other"))[1])


def test_it_creates_an_endpoint_and_shows_its_secret_this_once(api, workspace):
    response = create(api, events=["otp.approved", "otp.sent", "otp.approved"])

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True and "not shown again" in body["message"]
    data = body["data"]
    assert set(data) == FIELDS | {"secret"}
    assert (data["url"], data["events"], data["failing"]) == (HOOK, ["otp.approved", "otp.sent"], False)
    assert data["secret"].startswith("whsec_") and len(base64.b64decode(data["secret"][6:])) == 32
    Webhook(data["secret"])  # the library accepts it as is
    endpoint = WebhookEndpoint.objects.get(public_id=data["webhookId"])
    assert endpoint.workspace == workspace and endpoint.events == ["otp.approved", "otp.sent"]
    assert data["secret"].encode() not in bytes(endpoint.encrypted_secret)
    audit = AuditEvent.objects.get(action="webhook.created")
    assert audit.target == data["webhookId"] and audit.actor.startswith("api:zk_")
    assert data["secret"] not in str(audit.detail)


def test_the_secret_is_never_shown_again(api):
    created = create(api).json()["data"]

    listed = api.get(URL).json()["data"]
    one = api.get(detail_url(created["webhookId"])).json()["data"]

    assert listed["items"] == [one]
    assert set(one) == FIELDS
    assert one == {key: value for key, value in created.items() if key != "secret"}
    assert created["secret"] not in str(listed) + str(one)


def test_it_lists_the_workspaces_endpoints_in_pages(api, other_api):
    first = create(api, "https://example.com/a").json()["data"]["webhookId"]
    second = create(api, "https://example.com/b").json()["data"]["webhookId"]
    create(other_api, "https://example.com/other")

    page = api.get(URL, {"pageSize": 1, "page": 2}).json()["data"]
    everything = api.get(URL).json()["data"]

    assert [item["webhookId"] for item in everything["items"]] == [first, second]
    assert (page["items"][0]["webhookId"], page["total"], page["totalPages"]) == (second, 2, 2)


def test_it_deletes_an_endpoint(api, workspace):
    webhook_id = create(api).json()["data"]["webhookId"]

    response = api.delete(detail_url(webhook_id))

    assert response.status_code == 200 and response.json()["data"] is None
    assert not WebhookEndpoint.objects.exists()
    assert_api_error(api.get(detail_url(webhook_id)), status=404, code="NOT_FOUND")
    assert AuditEvent.objects.filter(action="webhook.deleted", target=webhook_id).exists()


def test_it_rotates_the_secret_and_keeps_the_old_one_signing_for_24_hours(api):
    created = create(api).json()["data"]

    response = api.post(f"{detail_url(created['webhookId'])}/rotate-secret", {}, format="json")

    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == FIELDS | {"secret"} and data["secret"].startswith("whsec_")
    assert data["secret"] != created["secret"]
    endpoint = WebhookEndpoint.objects.get(public_id=created["webhookId"])
    overlap_ends = timezone.now() + timedelta(hours=24)
    assert abs((endpoint.previous_secret_expires_at - overlap_ends).total_seconds()) < 60
    assert AuditEvent.objects.filter(action="webhook.secret_rotated").exists()


@pytest.mark.parametrize("method, suffix", [("get", ""), ("delete", ""), ("post", "/rotate-secret")])
def test_another_workspaces_endpoint_answers_like_a_missing_one(api, other_api, method, suffix):
    theirs = create(other_api).json()["data"]["webhookId"]

    for webhook_id in (theirs, uuid.uuid4()):
        response = getattr(api, method)(detail_url(webhook_id) + suffix, {}, format="json")
        assert_api_error(response, status=404, code="NOT_FOUND")
    assert WebhookEndpoint.objects.filter(public_id=theirs, previous_secret_expires_at__isnull=True).exists()


@pytest.mark.parametrize(
    "payload, field, fragment",
    [
        ({"url": "http://example.com/hooks", "events": ["otp.sent"]}, "url", "must use https"),
        ({"url": "https://10.0.0.1/hooks", "events": ["otp.sent"]}, "url", "private"),
        ({"url": "https://example.com/" + "a" * 2000, "events": ["otp.sent"]}, "url", "2000"),
        ({"url": 7, "events": ["otp.sent"]}, "url", "valid string"),
        ({"events": ["otp.sent"]}, "url", "required"),
        ({"url": HOOK, "events": []}, "events", "empty"),
        ({"url": HOOK, "events": ["otp.verified"]}, "events", "Unknown event 'otp.verified'"),
        ({"url": HOOK, "events": "otp.sent"}, "events", "list"),
        ({"url": HOOK}, "events", "required"),
    ],
)
def test_it_reports_each_invalid_field(api, payload, field, fragment):
    response = api.post(URL, payload, format="json")

    body = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert list(body["errors"]) == [field] and fragment in body["errors"][field][0]
    assert not WebhookEndpoint.objects.exists()


def test_an_allowed_host_may_use_plain_http(api, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    assert create(api, "http://hooks.internal:8080/zeckta").status_code == 201


def test_a_workspace_has_at_most_ten_endpoints(api, other_api, workspace):
    for n in range(10):  # through the service: ten API calls in a second would meet the key's rate limit
        webhook_endpoint_create(workspace=workspace, url=f"https://example.com/{n}", events=["otp.sent"])

    body = assert_api_error(create(api, "https://example.com/11"), status=400, code="VALIDATION_ERROR")

    assert "at most 10" in body["message"] and "at most 10" in body["errors"]["nonFieldErrors"][0]
    assert create(other_api).status_code == 201  # a limit per workspace
    assert WebhookEndpoint.objects.count() == 11


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", URL),
        ("post", URL),
        ("get", f"{URL}/{uuid.uuid4()}"),
        ("delete", f"{URL}/{uuid.uuid4()}"),
        ("post", f"{URL}/{uuid.uuid4()}/rotate-secret"),
    ],
)
def test_every_endpoint_needs_a_key(db, method, path):
    response = getattr(Client(), method)(path, {}, content_type="application/json")
    assert_api_error(response, status=401, code="AUTHENTICATION_FAILED")


def test_an_id_that_is_not_a_uuid_is_an_unknown_route_and_put_is_not_allowed(api):
    assert_api_error(api.get(f"{URL}/42"), status=404, code="NOT_FOUND")
    webhook_id = create(api).json()["data"]["webhookId"]
    assert_api_error(api.put(detail_url(webhook_id), {}, format="json"), status=405, code="METHOD_NOT_ALLOWED")


def test_the_operations_are_documented_with_examples(client):
    document = client.get("/openapi.json").json()
    create_operation = document["paths"][URL]["post"]
    assert {"201", "400", "401"} <= set(create_operation["responses"])
    request_examples = create_operation["requestBody"]["content"]["application/json"]["examples"]
    assert any(example["value"]["url"].startswith("https://") for example in request_examples.values())
    answer = create_operation["responses"]["201"]["content"]["application/json"]
    assert any("secret" in example["value"]["data"] for example in answer["examples"].values())
    rotate = document["paths"][f"{URL}/{{webhook_id}}/rotate-secret"]["post"]
    assert {"200", "404"} <= set(rotate["responses"])
