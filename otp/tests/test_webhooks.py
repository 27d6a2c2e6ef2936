"""Webhook events of OTP sessions, end to end: a real OTP request, its SMS sent by the worker path, a
provider receipt, and the signed events a live receiver gets (API.md sections 4, 9 and 11)."""

import json
import re

import pytest
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from otp.delivery import sms_deliver
from otp.events import otp_event_emit
from otp.models import SmsAttempt, SmsMessage
from otp.tests.helpers import request_otp, session_url
from senders.tests.fake_gateway import Answer
from webhooks.delivery import webhook_deliver
from webhooks.models import Event, WebhookDelivery
from webhooks.services import webhook_endpoint_create
from webhooks.tests.receiver import Receiver
from zeckta.testing import DEST, wait_for

pytestmark = pytest.mark.django_db

RECEIPT_TOKEN = "receipt-token"


def subscribe(api, receiver: Receiver, *events: str) -> str:
    """An endpoint made through the API; returns its secret."""
    response = api.post("/v1/messaging/webhooks", {"url": receiver.url, "events": list(events)}, format="json")
    assert response.status_code == 201
    return response.json()["data"]["secret"]


def deliver_events(event_type: str) -> None:
    """Runs the webhook task for each delivery of `event_type`, as the worker would."""
    for delivery in WebhookDelivery.objects.filter(event_type=event_type):
        assert webhook_deliver(delivery_id=delivery.pk) == "delivered"


def received(receiver: Receiver, secret: str, event_type: str) -> dict:
    """The one event of that type the receiver got, its signature checked with the standardwebhooks library."""
    [payload] = [
        p for p in (Webhook(secret).verify(r.body, r.headers) for r in receiver.requests) if p["type"] == event_type
    ]
    return payload


def post_receipt(client, provider_id: str, status: str, timestamp: str = "2026-12-02T10:00:00Z"):
    response = client.post(
        reverse("sms-receipt", args=["default"]),
        {"id": provider_id, "status": status, "timestamp": timestamp},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {RECEIPT_TOKEN}",
    )
    assert response.status_code == 200


def test_an_otp_sms_sent_then_delivered_reaches_the_receiver_as_two_signed_events(
    api, client, receiver, fake_gateway, settings
):
    settings.SMS_HTTP_RECEIPT_TOKEN = RECEIPT_TOKEN
    secret = subscribe(api, receiver, "otp.sent", "otp.delivered")
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    assert sms_deliver(message_id=SmsMessage.objects.get().pk) == "sent"
    deliver_events("otp.sent")

    sent = received(receiver, secret, "otp.sent")
    view = api.get(session_url(session_id)).json()["data"]
    assert sent["data"]["delivery"]["status"] == "sent"
    assert {**sent["data"], "expiresInSeconds": None} == {**view, "expiresInSeconds": None}
    code = re.search(r"\b\d{6}\b", fake_gateway.texts()[0]).group()
    assert code.encode() not in receiver.requests[0].body  # never the code

    post_receipt(client, SmsAttempt.objects.get().provider_message_id, "delivered")
    deliver_events("otp.delivered")

    delivered = received(receiver, secret, "otp.delivered")
    assert delivered["timestamp"] == "2026-12-02T10:00:00.000000Z"  # the receipt's time: the event's
    assert delivered["data"]["sessionId"] == session_id
    assert (delivered["data"]["delivery"]["status"], delivered["data"]["delivery"]["deliveredAt"]) == (
        "delivered",
        "2026-12-02T10:00:00Z",
    )
    assert receiver.calls == 2


def test_a_receipt_that_says_undeliverable_is_otp_delivery_failed(api, client, receiver, fake_gateway, settings):
    settings.SMS_HTTP_RECEIPT_TOKEN = RECEIPT_TOKEN
    secret = subscribe(api, receiver, "otp.delivery_failed")
    request_otp(api, DEST)
    sms_deliver(message_id=SmsMessage.objects.get().pk)

    post_receipt(client, SmsAttempt.objects.get().provider_message_id, "undeliverable")
    post_receipt(client, SmsAttempt.objects.get().provider_message_id, "delivered")  # too late: nothing
    deliver_events("otp.delivery_failed")

    failed = received(receiver, secret, "otp.delivery_failed")
    assert failed["data"]["delivery"]["status"] == "undeliverable"
    assert WebhookDelivery.objects.count() == 1


def test_an_sms_the_worker_gives_up_on_is_otp_delivery_failed(api, receiver, fake_gateway):
    secret = subscribe(api, receiver, "otp.delivery_failed", "otp.sent")
    request_otp(api, DEST)
    fake_gateway.answer(Answer(400, {"error": "invalid number"}))  # permanent, and no other route

    assert sms_deliver(message_id=SmsMessage.objects.get().pk) == "failed"
    deliver_events("otp.delivery_failed")

    failed = received(receiver, secret, "otp.delivery_failed")
    assert failed["data"]["delivery"]["status"] == "failed"
    assert not WebhookDelivery.objects.filter(event_type="otp.sent").exists()


def test_an_event_rolls_back_with_the_state_change_it_reports(api, workspace, receiver):
    subscribe(api, receiver, "otp.approved")
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    with pytest.raises(RuntimeError), transaction.atomic():
        otp_event_emit(
            workspace_id=workspace.pk, session_public_id=session_id, event_type=Event.OTP_APPROVED, at=timezone.now()
        )
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError("the verify failed after all")

    assert not WebhookDelivery.objects.exists()


def test_emitting_without_a_subscriber_costs_no_query(api, workspace, receiver, django_assert_num_queries):
    subscribe(api, receiver, "otp.sent")  # another event
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    with transaction.atomic():
        otp_event_emit(
            workspace_id=workspace.pk, session_public_id=session_id, event_type=Event.OTP_APPROVED, at=timezone.now()
        )  # fills the cache
        with django_assert_num_queries(0):
            otp_event_emit(
                workspace_id=workspace.pk,
                session_public_id=session_id,
                event_type=Event.OTP_APPROVED,
                at=timezone.now(),
            )
    assert not WebhookDelivery.objects.exists()


def statements_of_a_send(api, dest: str) -> list[str]:
    request_otp(api, dest)
    message = SmsMessage.objects.get(to=dest)
    with CaptureQueriesContext(transaction.get_connection()) as captured:
        assert sms_deliver(message_id=message.pk) == "sent"
    return [query["sql"].split()[0] for query in captured.captured_queries]


def test_a_send_without_a_subscriber_costs_the_same_statements(api, workspace, receiver, sms_outbox):
    baseline = statements_of_a_send(api, "+233244000001")  # the caches fill on the first send
    baseline = statements_of_a_send(api, "+233244000002")
    webhook_endpoint_create(workspace=workspace, url=receiver.url, events=[Event.OTP_APPROVED])
    statements_of_a_send(api, "+233244000003")

    unsubscribed = statements_of_a_send(api, "+233244000004")

    # The claim, then the outcome with its attempt row (each its own transaction: savepoints in a test).
    assert baseline == unsubscribed == ["UPDATE", "WITH"]
    assert not WebhookDelivery.objects.exists()


def test_a_send_with_a_subscriber_records_otp_sent_in_the_outcomes_transaction(api, workspace, receiver, sms_outbox):
    webhook_endpoint_create(workspace=workspace, url=receiver.url, events=[Event.OTP_SENT])
    statements_of_a_send(api, "+233244000001")  # the caches fill on the first send

    statements = statements_of_a_send(api, DEST)

    # The claim, then one transaction: the outcome, the session (its id, then its view) and the outbox row.
    assert statements == ["UPDATE", "SAVEPOINT", "WITH", "SELECT", "SELECT", "INSERT", "RELEASE"]
    delivery = WebhookDelivery.objects.get(event_at__gt=SmsMessage.objects.get(to=DEST).created_at)
    assert json.loads(delivery.body)["data"]["delivery"]["status"] == "sent"


@pytest.mark.slow
def test_a_real_worker_sends_the_sms_then_its_signed_otp_sent_event(
    api, client, receiver, fake_gateway, broker_queue, start_worker, settings
):
    settings.SMS_HTTP_RECEIPT_TOKEN = RECEIPT_TOKEN
    start_worker(gateway=fake_gateway, WEBHOOK_ALLOWED_HOSTS="127.0.0.1", SMS_HTTP_RECEIPT_TOKEN=RECEIPT_TOKEN)
    secret = subscribe(api, receiver, "otp.sent", "otp.delivered")

    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    assert wait_for(lambda: receiver.calls == 1, timeout=30)
    assert received(receiver, secret, "otp.sent")["data"]["sessionId"] == session_id
    post_receipt(client, SmsAttempt.objects.get().provider_message_id, "delivered")
    assert wait_for(lambda: receiver.calls == 2, timeout=30)
    assert received(receiver, secret, "otp.delivered")["data"]["delivery"]["status"] == "delivered"
