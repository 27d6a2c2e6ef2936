"""Vonage, Infobip and Africa's Talking routes against fakes that speak each provider's wire format:
accepted, permanent error (failing over), transient error then success, time-out, and receipts
(delivered, failed, bad authentication, duplicate and out of order)."""

import json
import re
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from otp.delivery import SmsRetryLater, sms_deliver
from otp.models import SmsAttempt, SmsMessage
from otp.tests.helpers import request_otp, session_url
from senders.gateways import vonage
from senders.models import Route
from senders.routes import route_create
from senders.tests.fake_providers import (
    AT_KEY,
    AT_USERNAME,
    INFOBIP_KEY,
    VONAGE_KEY,
    VONAGE_SECRET,
    VONAGE_SIGNATURE_SECRET,
    FakeAfricasTalking,
    FakeInfobip,
    FakeProvider,
    FakeVonage,
    Scripted,
    at_answer,
    vonage_answer,
)
from zeckta.testing import DEST, assert_api_error

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://otp.example.com"
RECEIPT_TOKEN = "receipt-token-for-tests"


def started(fake: FakeProvider, settings) -> Iterator[FakeProvider]:
    settings.PUBLIC_URL = PUBLIC_URL
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_vonage(settings):
    yield from started(FakeVonage(), settings)


@pytest.fixture
def fake_infobip(settings):
    yield from started(FakeInfobip(), settings)


@pytest.fixture
def fake_at(settings):
    yield from started(FakeAfricasTalking(), settings)


def vonage_route(fake: FakeProvider, **options) -> Route:
    return route_create(
        name="vonage",
        backend="vonage",
        values={
            "api_key": VONAGE_KEY,
            "api_secret": VONAGE_SECRET,
            "signature_secret": VONAGE_SIGNATURE_SECRET,
            "base_url": fake.base_url,
            "timeout": "0.5",
        },
        **options,
    )


def infobip_route(fake: FakeProvider, **options) -> Route:
    return route_create(
        name="infobip",
        backend="infobip",
        values={"api_key": INFOBIP_KEY, "receipt_token": RECEIPT_TOKEN, "base_url": fake.base_url, "timeout": "0.5"},
        **options,
    )


def at_route(fake: FakeProvider, **options) -> Route:
    return route_create(
        name="africastalking",
        backend="africastalking",
        values={
            "username": AT_USERNAME,
            "api_key": AT_KEY,
            "receipt_token": RECEIPT_TOKEN,
            "base_url": fake.base_url,
            "timeout": "0.5",
        },
        **options,
    )


def deliver(message: SmsMessage) -> str:
    for _ in range(10):
        try:
            return sms_deliver(message_id=message.pk)
        except SmsRetryLater as retry:
            if retry.countdown:
                raise
    raise AssertionError("still retrying")


def sent_otp(api) -> tuple[str, SmsMessage]:
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    return session_id, SmsMessage.objects.get(session__public_id=session_id)


def delivery(api, session_id: str) -> dict:
    return api.get(session_url(session_id)).json()["data"]["delivery"]


# --- Vonage ----------------------------------------------------------------------------------------


def test_vonage_sends_its_form_with_the_callback_and_client_ref(api, fake_vonage):
    route = vonage_route(fake_vonage)
    session_id, message = sent_otp(api)

    assert deliver(message) == "sent"

    [call] = fake_vonage.accepted
    assert call.form["to"] == DEST.lstrip("+") and call.form["from"] == "ZECKTA"
    assert call.form["client-ref"] == str(message.public_id)
    assert call.form["callback"] == f"{PUBLIC_URL}/v1/webhooks/sms/{route.public_id}"
    assert "type" not in call.form and re.search(r"\b\d{6}\b", call.form["text"])
    assert SmsAttempt.objects.get().provider_message_id == "0C00000000000001"


def test_vonage_marks_ucs2_text_unicode(api, fake_vonage):
    vonage_route(fake_vonage)
    request_otp(api, DEST, messageTemplate="Código <OTP> ✓")
    deliver(SmsMessage.objects.get())
    assert fake_vonage.accepted[0].form["type"] == "unicode"


def test_vonage_throttling_is_retried_and_a_bad_number_fails_over(api, fake_vonage, fake_gateway):
    vonage_route(fake_vonage, priority=1)
    route_create(name="relay", backend="http", values={"url": fake_gateway.url}, priority=2)
    fake_vonage.answer(
        Scripted(body=vonage_answer(status="1", error="Throughput Rate Exceeded")),
        Scripted(body=vonage_answer(status="6", error="Invalid Message")),
    )
    session_id, message = sent_otp(api)

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)  # throttled: the same route again, later
    assert deliver(message) == "sent"  # invalid message: final on vonage, the relay carries it

    attempts = list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", "status", "error_code"))
    assert attempts == [("vonage", "failed", "1"), ("vonage", "failed", "6"), ("relay", "accepted", "")]
    assert delivery(api, session_id)["route"] == "relay"


def vonage_receipt(
    client, route: Route, params: dict, *, secret: str = VONAGE_SIGNATURE_SECRET, timestamp: float | None = None
):
    signed = {**params, "timestamp": str(int(time.time() if timestamp is None else timestamp)), "nonce": "b1e4"}
    signed["sig"] = vonage.signature(secret, signed)
    return client.post(
        reverse("sms-receipt", args=[route.public_id]),
        urlencode(signed),
        content_type="application/x-www-form-urlencoded",
    )


def test_vonage_receipts_are_signed_idempotent_and_final(api, client, fake_vonage):
    route = vonage_route(fake_vonage)
    session_id, message = sent_otp(api)
    deliver(message)
    base = {"messageId": "0C00000000000001", "msisdn": DEST.lstrip("+"), "to": "ZECKTA", "err-code": "0"}

    forged = vonage_receipt(client, route, {**base, "status": "delivered"}, secret="guessed")
    accepted = vonage_receipt(client, route, {**base, "status": "accepted"})
    delivered = vonage_receipt(client, route, {**base, "status": "delivered"})
    late = vonage_receipt(client, route, {**base, "status": "failed", "err-code": "5"})

    assert_api_error(forged, status=403, code="FORBIDDEN")
    assert accepted.status_code == delivered.status_code == late.status_code == 200
    assert delivery(api, session_id)["status"] == "delivered"
    assert SmsAttempt.objects.get().status == "delivered"


def test_a_failed_vonage_receipt_is_undeliverable(api, client, fake_vonage):
    route = vonage_route(fake_vonage)
    session_id, message = sent_otp(api)
    deliver(message)
    vonage_receipt(client, route, {"messageId": "0C00000000000001", "status": "failed", "err-code": "2"})
    assert delivery(api, session_id)["status"] == "undeliverable"
    assert SmsAttempt.objects.get().error_code == "2"


def test_vonage_hmac_signatures_are_checked_too(api, client, fake_vonage):
    route = route_create(
        name="vonage-sha256",
        backend="vonage",
        values={
            "api_key": VONAGE_KEY,
            "api_secret": VONAGE_SECRET,
            "signature_secret": VONAGE_SIGNATURE_SECRET,
            "signature_method": "sha256",
            "base_url": fake_vonage.base_url,
        },
    )
    session_id, message = sent_otp(api)
    deliver(message)
    params = {"messageId": "0C00000000000001", "status": "delivered", "timestamp": str(int(time.time()))}
    md5_signed = {**params, "sig": vonage.signature(VONAGE_SIGNATURE_SECRET, params)}
    sha_signed = {**params, "sig": vonage.signature(VONAGE_SIGNATURE_SECRET, params, method="sha256").upper()}
    url = reverse("sms-receipt", args=[route.public_id])

    wrong_method = client.post(url, json.dumps(md5_signed), content_type="application/json")
    right = client.post(url, json.dumps(sha_signed), content_type="application/json")

    assert_api_error(wrong_method, status=403, code="FORBIDDEN")
    assert right.status_code == 200 and delivery(api, session_id)["status"] == "delivered"


# --- Infobip ---------------------------------------------------------------------------------------


def infobip_receipt(client, route: Route, results: list[dict], *, token: str = RECEIPT_TOKEN):
    url = reverse("sms-receipt", args=[route.public_id]) + "?" + urlencode({"token": token})
    return client.post(url, json.dumps({"results": results}), content_type="application/json")


def test_infobip_sends_json_with_its_app_key_and_the_tokened_notify_url(api, fake_infobip):
    route = infobip_route(fake_infobip)
    _, message = sent_otp(api)

    assert deliver(message) == "sent"

    [call] = fake_infobip.accepted
    [entry] = call.json["messages"]
    assert entry["destinations"] == [{"to": DEST.lstrip("+"), "messageId": str(message.public_id)}]
    assert entry["from"] == "ZECKTA" and entry["notifyContentType"] == "application/json"
    assert entry["notifyUrl"] == f"{PUBLIC_URL}/v1/webhooks/sms/{route.public_id}?token={RECEIPT_TOKEN}"
    assert SmsAttempt.objects.get().provider_message_id == str(message.public_id)


def test_infobip_rejection_fails_over_and_5xx_is_retried(api, fake_infobip, fake_gateway):
    infobip_route(fake_infobip, priority=1)
    route_create(name="relay", backend="http", values={"url": fake_gateway.url}, priority=2)
    rejected = {
        "messages": [
            {"messageId": "x", "status": {"groupId": 5, "groupName": "REJECTED", "id": 6, "name": "REJECTED_NETWORK"}}
        ]
    }
    fake_infobip.answer(Scripted(status=503, body={}), Scripted(body=rejected))
    _, message = sent_otp(api)

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)
    assert deliver(message) == "sent"

    codes = list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", "error_code"))
    assert codes == [("infobip", "503"), ("infobip", "REJECTED_NETWORK"), ("relay", "")]


def test_infobip_reports_apply_in_order_and_need_the_token(api, client, fake_infobip):
    route = infobip_route(fake_infobip)
    session_id, message = sent_otp(api)
    deliver(message)
    report = {
        "messageId": str(message.public_id),
        "status": {"groupId": 2, "groupName": "UNDELIVERABLE", "id": 9, "name": "UNDELIVERABLE_NOT_DELIVERED"},
        "error": {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER"},
    }

    assert_api_error(infobip_receipt(client, route, [report], token="nope"), status=403, code="FORBIDDEN")
    assert delivery(api, session_id)["status"] == "sent"
    assert infobip_receipt(client, route, [report]).status_code == 200
    delivered = {**report, "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}}
    assert infobip_receipt(client, route, [delivered]).status_code == 200  # too late: the first final stays

    assert delivery(api, session_id)["status"] == "undeliverable"
    assert SmsAttempt.objects.get().error_code == "EC_ABSENT_SUBSCRIBER"


# --- Africa's Talking --------------------------------------------------------------------------------


def at_receipt(client, route: Route, form: dict, *, token: str = RECEIPT_TOKEN):
    url = reverse("sms-receipt", args=[route.public_id]) + "?" + urlencode({"token": token})
    return client.post(url, urlencode(form), content_type="application/x-www-form-urlencoded")


def test_africastalking_sends_its_form_with_the_api_key_header(api, fake_at):
    at_route(fake_at)
    _, message = sent_otp(api)

    assert deliver(message) == "sent"

    [call] = fake_at.accepted
    assert (call.form["username"], call.form["to"], call.form["from"]) == (AT_USERNAME, DEST, "ZECKTA")
    assert SmsAttempt.objects.get().provider_message_id == "ATXid_000001"


def test_africastalking_status_codes_decide_retry_or_failover(api, fake_at, fake_gateway):
    at_route(fake_at, priority=1)
    route_create(name="relay", backend="http", values={"url": fake_gateway.url}, priority=2)
    fake_at.answer(
        Scripted(status=201, body=at_answer(status_code=501, status="GatewayError")),
        Scripted(status=201, body=at_answer(status_code=403, status="InvalidPhoneNumber")),
    )
    _, message = sent_otp(api)

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)
    assert deliver(message) == "sent"

    codes = list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", "error_code"))
    assert codes == [("africastalking", "501"), ("africastalking", "403"), ("relay", "")]


def test_africastalking_reports_need_the_token_and_never_go_backwards(api, client, fake_at):
    route = at_route(fake_at)
    session_id, message = sent_otp(api)
    deliver(message)
    base = {"id": "ATXid_000001", "phoneNumber": DEST, "networkCode": "62001"}

    assert_api_error(at_receipt(client, route, {**base, "status": "Success"}, token="x"), status=403, code="FORBIDDEN")
    for status in ("Submitted", "Success", "Success", "Buffered", "Failed"):
        assert at_receipt(client, route, {**base, "status": status}).status_code == 200

    assert delivery(api, session_id)["status"] == "delivered"
    assert delivery(api, session_id)["deliveredAt"] is not None


# --- Every HTTP provider: a transient error then success on the same route, and a time-out ------------

TRANSIENT_THEN_OK = {
    "vonage": (vonage_route, "fake_vonage", Scripted(body=vonage_answer(status="5", error="Internal Error")), "5"),
    "infobip": (infobip_route, "fake_infobip", Scripted(status=500, body={}), "500"),
    "africastalking": (
        at_route,
        "fake_at",
        Scripted(status=201, body=at_answer(status_code=500, status="InternalServerError")),
        "500",
    ),
}


@pytest.mark.parametrize("provider", sorted(TRANSIENT_THEN_OK))
def test_a_transient_error_then_success_stays_on_the_route_with_the_same_code(api, request, provider):
    make_route, fixture, failure, code = TRANSIENT_THEN_OK[provider]
    fake = request.getfixturevalue(fixture)
    make_route(fake)
    fake.answer(failure)
    session_id, message = sent_otp(api)

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)
    assert deliver(message) == "sent"

    attempts = list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", "status", "error_code"))
    assert attempts == [(provider, "failed", code), (provider, "accepted", "")]
    assert len(fake.accepted) == 2
    assert delivery(api, session_id)["route"] == provider


@pytest.mark.parametrize("provider", sorted(TRANSIENT_THEN_OK))
def test_a_provider_time_out_is_transient(api, request, provider):
    make_route, fixture, _, _ = TRANSIENT_THEN_OK[provider]
    fake = request.getfixturevalue(fixture)
    make_route(fake)
    fake.answer(Scripted(delay=1.5))  # the routes wait 0.5 s
    _, message = sent_otp(api)

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)
    assert SmsAttempt.objects.get().status == "failed"
    message.refresh_from_db()
    assert message.status == "queued" and message.encrypted_text is not None  # kept for the retry
