"""What real providers and attackers do to receipts and sends, against fakes that behave as each provider
documents (issue 17): Infobip's intermediate DELIVERED_TO_OPERATOR and its duplicate-messageId refusal,
Vonage's 100-character callback and replayed signed receipts, Twilio's signature as its own validator
computes it, Africa's Talking's plain-text errors, and receipts that would store absurd times or flood
the early-receipt table."""

import json
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.core.management import CommandError
from django.http import QueryDict
from django.urls import reverse
from twilio.request_validator import RequestValidator

from otp.delivery import SmsRetryLater, sms_deliver
from otp.models import EarlyReceipt, OtpSession, SmsAttempt, SmsMessage
from otp.tests.helpers import request_otp, session_url
from otp.tests.test_providers import RECEIPT_TOKEN, at_route, infobip_route, vonage_receipt, vonage_route
from senders.gateways import OutgoingSms, PermanentGatewayError, get_gateway
from senders.models import Route
from senders.routes import route_create, route_settings_problem
from senders.tests.fake_providers import (
    AT_USERNAME,
    FakeAfricasTalking,
    FakeInfobip,
    FakeProvider,
    FakeVonage,
    Scripted,
    infobip_report,
)
from senders.tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from zeckta.checks import check_production_settings
from zeckta.errors import ValidationFailed
from zeckta.testing import DEST, assert_api_error, run_command

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://otp.example.com"
# 8 + 48 + 12 characters: with /v1/webhooks/sms/ and a route id, a receipt URL of 121 characters.
LONG_PUBLIC_URL = "https://" + "x" * 48 + ".example.com"


def started(fake: FakeProvider | FakeTwilio, settings) -> Iterator:
    settings.PUBLIC_URL = PUBLIC_URL
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_infobip(settings):
    yield from started(FakeInfobip(), settings)


@pytest.fixture
def fake_vonage(settings):
    yield from started(FakeVonage(), settings)


@pytest.fixture
def fake_at(settings):
    yield from started(FakeAfricasTalking(), settings)


@pytest.fixture
def fake_twilio(settings):
    yield from started(FakeTwilio(), settings)


def deliver(message: SmsMessage) -> str:
    """The send task for one SMS, following failovers as the task's retries would; a real backoff raises."""
    for _ in range(10):
        try:
            return sms_deliver(message_id=message.pk)
        except SmsRetryLater as retry:
            if retry.countdown:
                raise
    raise AssertionError("still retrying")


def sent_otp(api) -> tuple[str, SmsMessage]:
    body = request_otp(api, DEST).json()["data"]
    return body["sessionId"], SmsMessage.objects.get(session__public_id=body["sessionId"])


def delivery(api, session_id: str) -> dict:
    return api.get(session_url(session_id)).json()["data"]["delivery"]


def relay_route(fake_gateway) -> Route:
    return route_create(name="relay", backend="http", values={"url": fake_gateway.url}, priority=2)


# --- Infobip: DELIVERED_TO_OPERATOR is not delivery ----------------------------------------------------


def post_reports(client, reports: list[tuple[str, bytes]]) -> list[int]:
    return [client.post(path, body, content_type="application/json").status_code for path, body in reports]


def test_infobip_delivered_to_operator_is_sent_and_a_later_undeliverable_takes_effect(api, client, fake_infobip):
    infobip_route(fake_infobip)
    session_id, message = sent_otp(api)
    assert deliver(message) == "sent"
    operator, final = fake_infobip.reports(fake_infobip.accepted[0], final="UNDELIVERABLE_NOT_DELIVERED")

    assert post_reports(client, [operator]) == [200]
    assert delivery(api, session_id)["status"] == "sent" and delivery(api, session_id)["deliveredAt"] is None
    assert SmsAttempt.objects.get().status == "sent"

    assert post_reports(client, [final]) == [200]
    assert delivery(api, session_id)["status"] == "undeliverable"
    assert SmsAttempt.objects.get().provider_status == "UNDELIVERABLE_NOT_DELIVERED"

    # A session whose SMS failed for good is not reused: asking again sends a new code.
    again = request_otp(api, DEST).json()["data"]
    assert again["reused"] is False and again["sessionId"] != session_id
    assert SmsMessage.objects.count() == 2


def test_infobip_only_delivered_to_handset_is_delivered(api, client, fake_infobip):
    infobip_route(fake_infobip)
    session_id, message = sent_otp(api)
    deliver(message)

    assert post_reports(client, fake_infobip.reports(fake_infobip.accepted[0])) == [200, 200]

    view = delivery(api, session_id)
    assert view["status"] == "delivered" and view["deliveredAt"] is not None
    assert SmsAttempt.objects.get().provider_status == "DELIVERED_TO_HANDSET"


# --- Infobip: REJECTED_DUPLICATE_MESSAGE_ID after a lost answer ------------------------------------------


def test_infobip_duplicate_message_id_on_a_retry_means_already_accepted(api, client, fake_infobip, fake_gateway):
    infobip_route(fake_infobip, priority=1)
    relay_route(fake_gateway)
    fake_infobip.answer(Scripted(delay=1.5))  # Infobip takes it, the answer comes after the route's 0.5 s
    session_id, message = sent_otp(api)

    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=message.pk)
    assert deliver(message) == "sent"

    # Infobip refused the retry as a duplicate of the message it already held: no failover, one SMS.
    assert [call.accepted for call in fake_infobip.calls] == [True, False]
    assert fake_gateway.texts() == []
    attempts = list(
        SmsAttempt.objects.order_by("started_at", "pk").values_list(
            "route_name", "status", "provider_message_id", "provider_status"
        )
    )
    assert attempts == [
        ("infobip", "failed", "", ""),
        ("infobip", "accepted", str(message.public_id), "REJECTED_DUPLICATE_MESSAGE_ID"),
    ]
    assert delivery(api, session_id)["route"] == "infobip"

    # The first call's reports are matched: the route and its message id are kept.
    assert post_reports(client, fake_infobip.reports(fake_infobip.calls[0])) == [200, 200]
    assert delivery(api, session_id)["status"] == "delivered"


def test_infobip_duplicate_message_id_on_a_first_call_is_an_error(api, fake_infobip, fake_gateway):
    infobip_route(fake_infobip, priority=1)
    relay_route(fake_gateway)
    session_id, message = sent_otp(api)
    fake_infobip.message_ids.add(str(message.public_id))  # someone else's message already used the id

    assert deliver(message) == "sent"

    codes = list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", "error_code"))
    assert codes == [("infobip", "REJECTED_DUPLICATE_MESSAGE_ID"), ("relay", "")]
    assert delivery(api, session_id)["route"] == "relay"


def test_an_infobip_report_of_a_refused_duplicate_changes_nothing(api, client, fake_infobip):
    infobip_route(fake_infobip)
    session_id, message = sent_otp(api)
    deliver(message)
    url = reverse("sms-receipt", args=[Route.objects.get().public_id]) + f"?token={RECEIPT_TOKEN}"
    report = infobip_report(str(message.public_id), "REJECTED_DUPLICATE_MESSAGE_ID")

    assert client.post(url, json.dumps({"results": [report]}), content_type="application/json").status_code == 200
    assert delivery(api, session_id)["status"] == "sent"


# --- Infobip: what one receipt request may store ---------------------------------------------------------


def test_one_receipt_request_keeps_at_most_ten_early_receipts(api, client, fake_infobip):
    route = infobip_route(fake_infobip)
    session_id, message = sent_otp(api)
    deliver(message)
    url = reverse("sms-receipt", args=[route.public_id]) + f"?token={RECEIPT_TOKEN}"
    results = [
        infobip_report(str(message.public_id), "DELIVERED_TO_HANDSET"),
        *(infobip_report(f"made-up-{number}", "DELIVERED_TO_HANDSET") for number in range(50)),
    ]

    response = client.post(url, json.dumps({"results": results}), content_type="application/json")

    assert response.status_code == 200 and response.json()["success"] is True
    assert EarlyReceipt.objects.count() == 10
    assert delivery(api, session_id)["status"] == "delivered"  # the real one among them still applies


def test_a_receipt_request_of_more_than_a_hundred_results_is_refused_whole(api, client, fake_infobip):
    route = infobip_route(fake_infobip)
    session_id, message = sent_otp(api)
    deliver(message)
    url = reverse("sms-receipt", args=[route.public_id]) + f"?token={RECEIPT_TOKEN}"
    results = [
        infobip_report(str(message.public_id), "DELIVERED_TO_HANDSET"),
        *(infobip_report(f"made-up-{number}", "DELIVERED_TO_HANDSET") for number in range(100)),
    ]

    response = client.post(url, json.dumps({"results": results}), content_type="application/json")

    assert_api_error(response, status=413, code="PAYLOAD_TOO_LARGE")
    assert not EarlyReceipt.objects.exists()
    assert delivery(api, session_id)["status"] == "sent"


# --- Vonage: the 100-character callback ------------------------------------------------------------------


def vonage_values() -> dict[str, str]:
    return {"api_key": "k", "api_secret": "s", "signature_secret": "sig"}


def test_a_vonage_route_whose_receipt_url_is_too_long_is_refused_with_its_length(settings):
    settings.PUBLIC_URL = LONG_PUBLIC_URL

    with pytest.raises(ValidationFailed, match="is 121 characters; Vonage refuses a callback over 100"):
        route_create(name="vonage", backend="vonage", values=vonage_values())
    with pytest.raises(CommandError, match="is 121 characters"):
        run_command(
            "add_route",
            "vonage",
            "--backend",
            "vonage",
            *(arg for name, value in vonage_values().items() for arg in ("--setting", f"{name}={value}")),
        )

    assert not Route.objects.exists()
    route_create(name="twilio", backend="twilio", values={"account_sid": "AC1", "auth_token": "t"})  # no limit


def test_the_admin_refuses_a_vonage_route_whose_receipt_url_is_too_long(admin_client, settings):
    settings.PUBLIC_URL = LONG_PUBLIC_URL
    response = admin_client.post(
        reverse("admin:senders_route_add"),
        {
            "name": "vonage",
            "backend": "vonage",
            "new_settings": json.dumps(vonage_values()),
            "countries": "",
            "priority": "1",
            "enabled": "on",
        },
    )

    assert response.status_code == 200
    assert "is 121 characters" in str(response.context["adminform"].form.errors["backend"])
    assert not Route.objects.exists()


def test_check_deploy_names_a_vonage_route_whose_receipt_url_grew_too_long(settings):
    settings.DEBUG, settings.SMS_BACKEND, settings.PUBLIC_URL = False, "http", PUBLIC_URL
    route_create(name="vonage", backend="vonage", values=vonage_values())
    assert [m for m in check_production_settings(None, databases=["default"]) if m.id == "zeckta.E006"] == []

    settings.PUBLIC_URL = LONG_PUBLIC_URL
    [error] = [m for m in check_production_settings(None, databases=["default"]) if m.id == "zeckta.E006"]

    assert "route vonage" in error.msg and "is 121 characters" in error.msg


def test_a_vonage_send_goes_without_a_callback_vonage_would_refuse(api, fake_vonage, settings):
    vonage_route(fake_vonage)
    settings.PUBLIC_URL = LONG_PUBLIC_URL  # changed after the route was configured
    session_id, message = sent_otp(api)

    assert deliver(message) == "sent"

    [call] = fake_vonage.accepted
    assert "callback" not in call.form
    assert delivery(api, session_id)["route"] == "vonage"


def test_the_vonage_fake_refuses_a_long_callback_as_vonage_does(fake_vonage):
    gateway = get_gateway(
        "vonage",
        {**vonage_values(), "api_key": "abcd1234", "api_secret": "vonage-api-secret", "base_url": fake_vonage.base_url},
    )
    gateway.receipt_url_problem = lambda url: None  # type: ignore[method-assign]  # as before the check

    with pytest.raises(PermanentGatewayError) as refused:
        gateway.send(
            OutgoingSms(
                to=DEST,
                src="ZECKTA",
                text="code 123456",
                reference="r1",
                receipt_url=LONG_PUBLIC_URL + "/v1/webhooks/sms/" + "0" * 36,
            )
        )
    assert refused.value.error_code == "23"


# --- Vonage: signed receipts are fresh ------------------------------------------------------------------


def test_a_replayed_vonage_receipt_is_refused_and_changes_nothing(api, client, fake_vonage):
    route = vonage_route(fake_vonage)
    session_id, message = sent_otp(api)
    deliver(message)
    receipt = {"messageId": "0C00000000000001", "status": "delivered", "err-code": "0"}

    stale = vonage_receipt(client, route, receipt, timestamp=time.time() - 301)
    ahead = vonage_receipt(client, route, receipt, timestamp=time.time() + 301)

    assert_api_error(stale, status=403, code="FORBIDDEN")
    assert_api_error(ahead, status=403, code="FORBIDDEN")
    assert delivery(api, session_id)["status"] == "sent" and SmsAttempt.objects.get().status == "accepted"
    assert vonage_receipt(client, route, receipt, timestamp=time.time() - 60).status_code == 200
    assert delivery(api, session_id)["status"] == "delivered"


def test_a_non_ascii_vonage_signature_is_refused_not_a_500(api, client, fake_vonage):
    route = vonage_route(fake_vonage)
    _, message = sent_otp(api)
    deliver(message)
    form = {"messageId": "0C00000000000001", "status": "delivered", "timestamp": str(int(time.time())), "sig": "é" * 32}

    response = client.post(
        reverse("sms-receipt", args=[route.public_id]),
        urlencode(form),
        content_type="application/x-www-form-urlencoded",
    )

    assert_api_error(response, status=403, code="FORBIDDEN")
    assert SmsAttempt.objects.get().status == "accepted"


# --- Twilio: the official validator's signatures -----------------------------------------------------------


def twilio_route(fake: FakeTwilio) -> Route:
    return route_create(
        name="twilio",
        backend="twilio",
        values={"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": fake.base_url, "timeout": "2"},
    )


def twilio_sent(api, fake: FakeTwilio) -> tuple[str, Route, str]:
    route = twilio_route(fake)
    session_id, message = sent_otp(api)
    deliver(message)
    return session_id, route, SmsAttempt.objects.get().provider_message_id


def official_signature(url: str, body: str) -> str:
    """What Twilio sends: computed by twilio-python's RequestValidator, not by the service's own code."""
    return RequestValidator(AUTH_TOKEN).compute_signature(url, QueryDict(body))


@pytest.mark.parametrize(
    "public_url, signed_url_host",
    [
        ("https://otp.example.com", "otp.example.com:443"),  # Twilio signed with the default port
        ("https://otp.example.com:443", "otp.example.com"),  # Twilio signed without it
    ],
)
def test_a_twilio_signature_over_the_url_with_or_without_the_default_port_is_accepted(
    api, client, fake_twilio, settings, public_url, signed_url_host
):
    session_id, route, sid = twilio_sent(api, fake_twilio)
    settings.PUBLIC_URL = public_url
    path = reverse("sms-receipt", args=[route.public_id])
    body = urlencode({"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID})

    response = client.post(
        path,
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=official_signature(f"https://{signed_url_host}{path}", body),
    )

    assert response.status_code == 200, response.json()
    assert delivery(api, session_id)["status"] == "delivered"


def test_a_twilio_signature_covers_every_value_of_a_repeated_parameter(api, client, fake_twilio):
    session_id, route, sid = twilio_sent(api, fake_twilio)
    path = reverse("sms-receipt", args=[route.public_id])
    body = urlencode([("MessageSid", sid), ("MessageStatus", "delivered"), ("Tag", "b"), ("Tag", "a")])
    signature = official_signature(PUBLIC_URL + path, body)
    forged = urlencode([("MessageSid", sid), ("MessageStatus", "delivered"), ("Tag", "b"), ("Tag", "c")])

    refused = client.post(
        path, forged, content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
    )
    accepted = client.post(
        path, body, content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
    )

    assert_api_error(refused, status=403, code="FORBIDDEN")
    assert accepted.status_code == 200
    assert delivery(api, session_id)["status"] == "delivered"


def test_a_non_ascii_twilio_signature_is_refused_not_a_500(api, client, fake_twilio):
    session_id, route, sid = twilio_sent(api, fake_twilio)
    body = urlencode({"MessageSid": sid, "MessageStatus": "delivered"})

    response = client.post(
        reverse("sms-receipt", args=[route.public_id]),
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE="é" * 28,
    )

    assert_api_error(response, status=403, code="FORBIDDEN")
    assert delivery(api, session_id)["status"] == "sent"


# --- Africa's Talking: plain-text errors and the Accept header --------------------------------------------


def test_africastalking_plain_text_errors_fail_over_with_their_status(api, fake_at, fake_gateway):
    route_create(
        name="africastalking",
        backend="africastalking",
        values={
            "username": AT_USERNAME,
            "api_key": "a-wrong-key",
            "receipt_token": RECEIPT_TOKEN,
            "base_url": fake_at.base_url,
            "timeout": "0.5",
        },
        priority=1,
    )
    relay_route(fake_gateway)
    session_id, message = sent_otp(api)

    assert deliver(message) == "sent"

    [refused] = fake_at.calls
    assert not refused.accepted
    attempts = list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", "error_code"))
    assert attempts == [("africastalking", "401"), ("relay", "")]


def test_africastalking_is_asked_for_json(api, fake_at):
    at_route(fake_at)
    _, message = sent_otp(api)

    assert deliver(message) == "sent"

    assert fake_at.accepted[0].headers["accept"] == "application/json"
    assert SmsAttempt.objects.get().provider_message_id == "ATXid_000001"


# --- The http backend: receipt times Python can read back ---------------------------------------------------


@pytest.mark.parametrize(
    "timestamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1999-12-31T23:59:59Z", "not a time"]
)
def test_an_http_receipt_with_an_absurd_timestamp_is_refused_and_pages_still_load(
    api, client, admin_client, fake_gateway, settings, timestamp
):
    route = route_create(name="relay", backend="http", values={"url": fake_gateway.url, "receipt_token": "t0k3n"})
    session_id, message = sent_otp(api)
    deliver(message)
    body = {"id": SmsAttempt.objects.get().provider_message_id, "status": "delivered", "timestamp": timestamp}

    response = client.post(
        reverse("sms-receipt", args=[route.public_id]) + "?token=t0k3n", body, content_type="application/json"
    )

    assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert list(response.json()["errors"]) == ["timestamp"]
    assert SmsAttempt.objects.get().receipt_at is None
    assert api.get(session_url(session_id)).status_code == 200
    assert admin_client.get(reverse("admin:otp_smsmessage_changelist")).status_code == 200
    assert OtpSession.objects.get().status == "PENDING"


# --- One source per fact: the route settings each backend needs --------------------------------------------

# API.md section 11, as the contract spells them.
CONTRACT_REQUIRED = {
    "twilio": {"account_sid": "AC1", "auth_token": "t"},
    "vonage": {"api_key": "k", "api_secret": "s", "signature_secret": "sig"},
    "infobip": {"api_key": "k", "receipt_token": "r"},
    "africastalking": {"username": "u", "api_key": "k", "receipt_token": "r"},
}


@pytest.mark.parametrize("backend", sorted(CONTRACT_REQUIRED))
def test_route_validation_and_the_gateway_ask_for_the_same_settings(backend):
    values = CONTRACT_REQUIRED[backend]
    assert route_settings_problem(backend, values) is None
    get_gateway(backend, values)
    for name in values:
        without = {other: value for other, value in values.items() if other != name}
        assert name in (route_settings_problem(backend, without) or "")
        with pytest.raises(PermanentGatewayError, match=name):
            get_gateway(backend, without)
