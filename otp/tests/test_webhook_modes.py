"""Test and live webhook endpoints (API.md section 10): an endpoint made with a test key receives the events
of test sessions only, a live one those of live sessions only, and each is invisible to the other kind of
key. Over HTTP, on both request paths, with real receivers on loopback."""

import re
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from otp.events import otp_event_emit
from otp.expiry import otp_sessions_expire
from otp.tests.helpers import cancel, deliver_and_read_code, new_session, verify
from webhooks.delivery import webhook_deliver
from webhooks.models import Event, WebhookDelivery, WebhookEndpoint
from webhooks.tests.receiver import Receiver
from workspaces.models import AuditEvent
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST, api_client, assert_api_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]

URL = "/v1/messaging/webhooks"
EVENTS = ["otp.sent", "otp.approved", "otp.canceled", "otp.expired"]


@pytest.fixture
def api_of_test_key(workspace, sender):
    return api_client(issue_key(workspace, name="tests", test=True)[1])


@pytest.fixture
def second_receiver(receiver):
    """Another live receiver on loopback (the `receiver` fixture allows 127.0.0.1)."""
    started = Receiver().start()
    yield started
    started.stop()


def subscribe(api, receiver: Receiver, events: list[str] = EVENTS) -> dict:
    response = api.post(URL, {"url": receiver.url, "events": events}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["data"]


def a_test_session(api_of_test_key) -> tuple[str, str]:
    """A test session and its code, read from the test inbox as a client's end-to-end test would."""
    session_id = new_session(api_of_test_key)
    [sms] = [
        m
        for m in api_of_test_key.get("/v1/messaging/test-inbox", {"dest": DEST}).json()["data"]
        if m["sessionId"] == session_id
    ]
    return session_id, re.search(r"\b\d{6}\b", sms["text"]).group()


def deliver_all() -> None:
    """Runs the webhook task for every delivery recorded, as the worker would."""
    for delivery in WebhookDelivery.objects.order_by("pk"):
        assert webhook_deliver(delivery_id=delivery.pk) == "delivered"


def received(receiver: Receiver, secret: str) -> list[tuple[str, str]]:
    """(event type, session id) of every call the receiver got, each signature checked."""
    payloads = [Webhook(secret).verify(r.body, r.headers) for r in receiver.requests]
    return sorted((p["type"], p["data"]["sessionId"]) for p in payloads)


def test_a_test_keys_endpoint_receives_the_events_of_test_sessions_and_a_live_endpoint_those_of_live_ones(
    api, api_of_test_key, receiver, second_receiver
):
    live = subscribe(api, receiver)
    test = subscribe(api_of_test_key, second_receiver)
    assert WebhookEndpoint.objects.get(public_id=test["webhookId"]).is_test is True
    assert WebhookEndpoint.objects.get(public_id=live["webhookId"]).is_test is False

    test_id, test_code = a_test_session(api_of_test_key)
    assert verify(api_of_test_key, test_id, test_code).json()["data"]["status"] == "APPROVED"
    test_canceled = new_session(api_of_test_key, purpose="PASSWORD_RESET")
    assert cancel(api_of_test_key, test_canceled).status_code == 200
    live_id = new_session(api)
    live_code = deliver_and_read_code(live_id)  # the worker path: otp.sent, of a live SMS
    assert verify(api, live_id, live_code).json()["data"]["status"] == "APPROVED"
    live_canceled = new_session(api, purpose="PASSWORD_RESET")
    assert cancel(api, live_canceled).status_code == 200
    deliver_all()

    assert received(second_receiver, test["secret"]) == sorted(
        [("otp.approved", test_id), ("otp.canceled", test_canceled)]
    )
    assert received(receiver, live["secret"]) == sorted(
        [("otp.sent", live_id), ("otp.approved", live_id), ("otp.canceled", live_canceled)]
    )
    by_endpoint = {(d.endpoint.public_id, d.event_type) for d in WebhookDelivery.objects.select_related("endpoint")}
    assert len(by_endpoint) == WebhookDelivery.objects.count() == 5


def test_the_expiry_sweep_sends_each_sessions_event_to_the_endpoints_of_its_mode(
    api, api_of_test_key, receiver, second_receiver
):
    live = subscribe(api, receiver, ["otp.expired"])
    test = subscribe(api_of_test_key, second_receiver, ["otp.expired"])
    test_id, live_id = new_session(api_of_test_key), new_session(api)

    with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
        assert otp_sessions_expire() == 2
        deliver_all()
        # Checked in the same moment: a signature's timestamp is refused five minutes away from the clock.
        assert received(second_receiver, test["secret"]) == [("otp.expired", test_id)]
        assert received(receiver, live["secret"]) == [("otp.expired", live_id)]


def test_a_live_endpoint_gets_no_event_of_a_test_session(api, api_of_test_key, receiver):
    subscribe(api, receiver)
    test_id, test_code = a_test_session(api_of_test_key)

    assert verify(api_of_test_key, test_id, test_code).json()["data"]["status"] == "APPROVED"

    assert not WebhookDelivery.objects.exists() and receiver.calls == 0


def test_a_test_endpoint_gets_no_event_of_a_live_session(api, api_of_test_key, receiver):
    subscribe(api_of_test_key, receiver)
    live_id = new_session(api)

    assert verify(api, live_id, deliver_and_read_code(live_id)).json()["data"]["status"] == "APPROVED"

    assert not WebhookDelivery.objects.exists() and receiver.calls == 0


@pytest.mark.parametrize("owner, other", [("api", "api_of_test_key"), ("api_of_test_key", "api")])
def test_each_kind_of_key_finds_the_other_kinds_endpoints_as_unknown_ones(owner, other, request, receiver):
    owner_api, other_api = request.getfixturevalue(owner), request.getfixturevalue(other)
    created = subscribe(owner_api, receiver)
    webhook_id = created["webhookId"]
    endpoint = WebhookEndpoint.objects.get(public_id=webhook_id)
    audits = AuditEvent.objects.count()

    listed = other_api.get(URL)
    assert listed.status_code == 200 and listed.json()["data"]["items"] == [] and listed.json()["data"]["total"] == 0
    unknown = uuid.uuid4()
    for path, method in ((f"{URL}/{{}}", "get"), (f"{URL}/{{}}", "delete"), (f"{URL}/{{}}/rotate-secret", "post")):
        call = getattr(other_api, method)
        kwargs = {"data": {}, "format": "json"} if method == "post" else {}
        theirs = assert_api_error(call(path.format(webhook_id), **kwargs), status=404, code="NOT_FOUND")
        missing = assert_api_error(call(path.format(unknown), **kwargs), status=404, code="NOT_FOUND")
        assert theirs["message"] == missing["message"] == "Webhook endpoint not found."

    after = WebhookEndpoint.objects.get(public_id=webhook_id)  # not deleted, secret not rotated
    assert (after.encrypted_secret, after.secret_prefix, after.encrypted_previous_secret) == (
        endpoint.encrypted_secret,
        endpoint.secret_prefix,
        None,
    )
    assert AuditEvent.objects.count() == audits
    assert [item["webhookId"] for item in owner_api.get(URL).json()["data"]["items"]] == [webhook_id]
    assert owner_api.get(f"{URL}/{webhook_id}").status_code == 200


def test_test_endpoints_do_not_use_up_the_live_ones_room(api, api_of_test_key, receiver, settings):
    settings.WEBHOOK_MAX_ENDPOINTS_PER_WORKSPACE = 2
    subscribe(api_of_test_key, receiver)
    subscribe(api_of_test_key, receiver)
    assert_api_error(
        api_of_test_key.post(URL, {"url": receiver.url, "events": EVENTS}, format="json"),
        status=400,
        code="VALIDATION_ERROR",
    )

    subscribe(api, receiver)
    subscribe(api, receiver)

    assert WebhookEndpoint.objects.filter(is_test=True).count() == WebhookEndpoint.objects.filter(is_test=False).count()


def test_a_mode_without_a_receiver_costs_its_events_no_query(
    workspace, api, api_of_test_key, receiver, django_assert_num_queries
):
    subscribe(api_of_test_key, receiver, [Event.OTP_APPROVED])
    live_id = new_session(api)
    otp_event_emit(
        workspace_id=workspace.pk,
        session_public_id=uuid.uuid4(),
        event_type=Event.OTP_APPROVED,
        at=timezone.now(),
        test=False,
    )  # warms the subscription cache

    with django_assert_num_queries(0):
        otp_event_emit(
            workspace_id=workspace.pk,
            session_public_id=uuid.UUID(live_id),
            event_type=Event.OTP_APPROVED,
            at=timezone.now(),
            test=False,
        )
    assert not WebhookDelivery.objects.exists()
