"""Provider routes: choosing one, Twilio's wire format, failover with the same code, rate caps, and
delivery receipts (API.md sections 4, 6 and 11). Fakes speak the providers' formats over real sockets."""

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import time_machine
from django.urls import reverse

from otp.delivery import SmsRetryLater, sms_deliver
from otp.models import EarlyReceipt, SmsAttempt, SmsMessage
from otp.tests.helpers import request_otp, session_url
from senders.gateways import twilio
from senders.models import Route
from senders.routes import route_create, route_settings
from senders.tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, TwilioAnswer
from zeckta.testing import DEST, assert_api_error, run_command

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://otp.example.com"


@pytest.fixture
def fake_twilio(settings) -> Iterator[FakeTwilio]:
    settings.PUBLIC_URL = PUBLIC_URL
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


def twilio_route(fake: FakeTwilio, *, name: str = "twilio-gh", **options) -> Route:
    return route_create(
        name=name,
        backend="twilio",
        values={"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": fake.base_url, "timeout": "2"},
        **options,
    )


def deliver(session_id: str) -> str:
    """Runs the send task for a session's SMS, following failovers as the task's retries would."""
    message = SmsMessage.objects.get(session__public_id=session_id)
    for _ in range(10):
        try:
            return sms_deliver(message_id=message.pk)
        except SmsRetryLater as retry:
            if retry.countdown:  # a real backoff: the test decides what happens next
                raise
    raise AssertionError("still retrying after 10 calls")


def receipt_url(route: Route) -> str:
    return reverse("sms-receipt", args=[route.public_id])


def post_twilio_receipt(client, route: Route, form: dict[str, str], *, token: str = AUTH_TOKEN):
    url = receipt_url(route)
    signature = twilio.signature(token, PUBLIC_URL + url, form)
    return client.post(
        url, urlencode(form), content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
    )


# --- Sending through Twilio ----------------------------------------------------------------------


def test_an_sms_goes_out_in_twilios_wire_format_with_its_receipt_url(api, fake_twilio):
    route = twilio_route(fake_twilio)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    assert deliver(session_id) == "sent"

    [call] = fake_twilio.accepted
    assert call.form["To"] == DEST and call.form["From"] == "ZECKTA"
    assert re.search(r"\b\d{6}\b", call.form["Body"])
    assert call.form["StatusCallback"] == f"{PUBLIC_URL}/v1/webhooks/sms/{route.public_id}"
    delivery = api.get(session_url(session_id)).json()["data"]["delivery"]
    assert (delivery["status"], delivery["route"], delivery["deliveredAt"]) == ("sent", "twilio-gh", None)
    attempt = SmsAttempt.objects.get()
    assert (attempt.status, attempt.provider_message_id, attempt.route_name) == (
        "accepted",
        "SM" + "0" * 31 + "1",
        "twilio-gh",
    )


def test_credentials_are_stored_encrypted(fake_twilio):
    route = twilio_route(fake_twilio)
    assert AUTH_TOKEN.encode() not in bytes(route.encrypted_settings)
    assert route_settings(Route.objects.get(pk=route.pk))["auth_token"] == AUTH_TOKEN


def test_a_transient_twilio_error_is_retried_on_the_same_route(api, fake_twilio):
    twilio_route(fake_twilio)
    fake_twilio.answer(TwilioAnswer(status=503), TwilioAnswer(status=429, code=20429))
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    message = SmsMessage.objects.get()

    for _ in range(2):
        with pytest.raises(SmsRetryLater):
            sms_deliver(message_id=message.pk)
        SmsMessage.objects.filter(pk=message.pk).update(next_attempt_at=message.created_at)
    assert deliver(session_id) == "sent"

    codes = [a.error_code for a in SmsAttempt.objects.order_by("started_at", "pk")]
    assert codes == ["20500", "20429", ""]
    bodies = {call.form["Body"] for call in fake_twilio.accepted}
    assert len(bodies) == 1  # every retry carries the same code


def test_a_twilio_time_out_is_transient(api, fake_twilio, settings):
    route_create(
        name="slow",
        backend="twilio",
        values={
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "base_url": fake_twilio.base_url,
            "timeout": "0.3",
        },
    )
    fake_twilio.answer(TwilioAnswer(delay=1.0))
    request_otp(api, DEST)
    with pytest.raises(SmsRetryLater):
        sms_deliver(message_id=SmsMessage.objects.get().pk)
    assert SmsAttempt.objects.get().status == "failed"


def test_a_permanent_error_fails_over_to_the_next_route_with_the_same_code(api, fake_twilio, fake_gateway):
    twilio_route(fake_twilio, priority=1)
    route_create(name="relay", backend="http", values={"url": fake_gateway.url}, priority=2)
    fake_twilio.answer(TwilioAnswer(status=400, code=21211))
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    assert deliver(session_id) == "sent"

    [refused] = fake_twilio.accepted
    [relayed] = fake_gateway.requests
    assert refused.form["Body"] == relayed.json["text"]
    attempts = list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", "status", "error_code"))
    assert attempts == [("twilio-gh", "failed", "21211"), ("relay", "accepted", "")]
    assert api.get(session_url(session_id)).json()["data"]["delivery"]["route"] == "relay"


def test_when_every_route_fails_the_sms_fails_and_the_default_route_is_the_last(
    api, fake_twilio, settings, closed_port_url
):
    twilio_route(fake_twilio)
    fake_twilio.answer(TwilioAnswer(status=400, code=21610))
    settings.SMS_BACKEND, settings.SMS_HTTP_URL = "http", closed_port_url.replace("/sms", "/refused")
    settings.SMS_MAX_SEND_ATTEMPTS = 1
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    assert deliver(session_id) == "failed"
    assert list(SmsAttempt.objects.order_by("started_at", "pk").values_list("route_name", flat=True)) == [
        "twilio-gh",
        "default",
    ]


def test_a_route_only_serves_its_countries(api, fake_twilio, sms_outbox):
    twilio_route(fake_twilio, countries="NG")
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]  # a Ghanaian number

    assert deliver(session_id) == "sent"
    assert fake_twilio.calls == [] and len(sms_outbox) == 1
    assert api.get(session_url(session_id)).json()["data"]["delivery"]["route"] == "default"


def test_a_disabled_route_is_skipped(api, fake_twilio, sms_outbox):
    twilio_route(fake_twilio, enabled=False)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    assert deliver(session_id) == "sent" and fake_twilio.calls == []


def test_the_rate_cap_holds_sends_to_the_next_second(api, fake_twilio):
    twilio_route(fake_twilio, rate_per_second=1)
    first = request_otp(api, DEST).json()["data"]["sessionId"]
    request_otp(api, "+233244123456")
    second = SmsMessage.objects.get(to="+233244123456")

    # Both sends in the middle of one second: the cap's window is the clock's second, and a real clock
    # could turn it between the two.
    with time_machine.travel(datetime.fromtimestamp(int(time.time()) + 0.5, tz=UTC), tick=False):
        assert deliver(first) == "sent"
        with pytest.raises(SmsRetryLater) as held:
            sms_deliver(message_id=second.pk)

    assert 0 < held.value.countdown <= 1 and held.value.jitter is False
    second.refresh_from_db()
    assert (second.status, second.attempts) == ("queued", 0)  # waiting for the cap is not an attempt
    assert len(fake_twilio.accepted) == 1


# --- Receipts ------------------------------------------------------------------------------------


def test_a_signed_twilio_receipt_marks_the_sms_delivered(api, client, fake_twilio):
    route = twilio_route(fake_twilio)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)
    sid = SmsAttempt.objects.get().provider_message_id

    response = post_twilio_receipt(
        client, route, {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": ACCOUNT_SID}
    )

    assert response.status_code == 200 and response.json()["success"] is True
    delivery = api.get(session_url(session_id)).json()["data"]["delivery"]
    assert delivery["status"] == "delivered" and delivery["deliveredAt"]


def test_receipts_are_idempotent_and_never_go_backwards(api, client, fake_twilio):
    route = twilio_route(fake_twilio)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)
    sid = SmsAttempt.objects.get().provider_message_id

    for status in ("delivered", "delivered", "sent", "undelivered"):
        assert post_twilio_receipt(client, route, {"MessageSid": sid, "MessageStatus": status}).status_code == 200

    assert api.get(session_url(session_id)).json()["data"]["delivery"]["status"] == "delivered"
    assert SmsAttempt.objects.get().status == "delivered"


def test_a_failed_receipt_is_undeliverable(api, client, fake_twilio):
    route = twilio_route(fake_twilio)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)
    sid = SmsAttempt.objects.get().provider_message_id
    post_twilio_receipt(client, route, {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"})

    assert api.get(session_url(session_id)).json()["data"]["delivery"]["status"] == "undeliverable"
    assert SmsAttempt.objects.get().error_code == "30003"


def test_a_receipt_with_a_bad_signature_is_refused_and_changes_nothing(api, client, fake_twilio):
    route = twilio_route(fake_twilio)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)
    sid = SmsAttempt.objects.get().provider_message_id

    forged = post_twilio_receipt(client, route, {"MessageSid": sid, "MessageStatus": "delivered"}, token="guess")
    unsigned = client.post(
        receipt_url(route),
        urlencode({"MessageSid": sid, "MessageStatus": "delivered"}),
        content_type="application/x-www-form-urlencoded",
    )

    assert_api_error(forged, status=403, code="FORBIDDEN")
    assert_api_error(unsigned, status=403, code="FORBIDDEN")
    assert api.get(session_url(session_id)).json()["data"]["delivery"]["status"] == "sent"


def test_an_unknown_message_id_is_answered_200_and_applied_when_its_send_commits(api, client, fake_twilio):
    """The provider can call back before the worker commits the send that learnt the message id."""
    route = twilio_route(fake_twilio)
    fake_twilio.answer(TwilioAnswer(sid="SMearly"))
    early = post_twilio_receipt(client, route, {"MessageSid": "SMearly", "MessageStatus": "delivered"})
    assert early.status_code == 200 and EarlyReceipt.objects.count() == 1

    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)

    assert api.get(session_url(session_id)).json()["data"]["delivery"]["status"] == "delivered"
    assert not EarlyReceipt.objects.exists()


def test_a_receipt_for_the_first_route_of_a_failed_over_sms_touches_that_attempt_only(
    api, client, fake_twilio, fake_gateway, settings
):
    route = twilio_route(fake_twilio, priority=1)
    route_create(name="relay", backend="http", values={"url": fake_gateway.url}, priority=2)
    fake_twilio.answer(TwilioAnswer(status=400, code=21211))
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)
    # Twilio reports on the message it refused: it names a sid nothing else has.
    post_twilio_receipt(client, route, {"MessageSid": "SMrefused", "MessageStatus": "failed"})

    assert api.get(session_url(session_id)).json()["data"]["delivery"]["status"] == "sent"


def test_the_http_backend_receipt_needs_the_route_token(api, client, fake_gateway, settings):
    route = route_create(name="relay", backend="http", values={"url": fake_gateway.url, "receipt_token": "t0k3n"})
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)
    provider_id = SmsAttempt.objects.get().provider_message_id
    body = {"id": provider_id, "status": "delivered", "timestamp": "2026-12-02T10:00:00Z"}

    refused = client.post(receipt_url(route), body, content_type="application/json", HTTP_AUTHORIZATION="Bearer no")
    accepted = client.post(receipt_url(route) + "?token=t0k3n", body, content_type="application/json")

    assert_api_error(refused, status=403, code="FORBIDDEN")
    assert accepted.status_code == 200
    delivery = api.get(session_url(session_id)).json()["data"]["delivery"]
    assert delivery["status"] == "delivered" and delivery["deliveredAt"] == "2026-12-02T10:00:00Z"


def test_an_unknown_route_is_not_found(client):
    assert_api_error(
        client.post("/v1/webhooks/sms/00000000-0000-4000-8000-000000000000", {}, content_type="application/json"),
        status=404,
        code="NOT_FOUND",
    )


# --- Operator commands ---------------------------------------------------------------------------


def test_add_route_and_list_routes(fake_twilio):
    route_id = run_command(
        "add_route",
        "twilio-main",
        "--backend",
        "twilio",
        "--countries",
        "GH,NG",
        "--priority",
        "5",
        "--rate",
        "20",
        "--setting",
        f"account_sid={ACCOUNT_SID}",
        "--setting",
        f"auth_token={AUTH_TOKEN}",
    )[-1]
    route = Route.objects.get(public_id=route_id)
    assert (route.countries, route.priority, route.rate_per_second) == ("GH,NG", 5, 20)

    lines = run_command("list_routes")

    assert lines[0].split() == ["name", "backend", "countries", "priority", "rate", "enabled", "sent_24h", "failed_24h"]
    assert lines[1].split() == ["twilio-main", "twilio", "GH,NG", "5", "20", "yes", "0", "0"]
    assert lines[2].split()[:2] == ["default", "locmem"]
    assert AUTH_TOKEN not in "\n".join(lines)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--backend", "twilio"), "needs the setting(s) account_sid, auth_token"),
        (("--backend", "pigeon"), "not available"),
        (("--backend", "http", "--setting", "url=https://x.example", "--setting", "colour=blue"), "takes no setting"),
        (("--backend", "http", "--setting", "url=https://x.example", "--rate", "0"), "between 1 and"),
    ],
)
def test_add_route_refuses_bad_input_in_one_line(args, fragment):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match=re.escape(fragment)):
        run_command("add_route", "r1", *args)
    assert not Route.objects.exists()


def test_the_default_route_takes_receipts_at_default_with_its_token(api, client, fake_gateway, settings):
    settings.SMS_HTTP_RECEIPT_TOKEN = "default-route-token"
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    deliver(session_id)
    provider_id = SmsAttempt.objects.get().provider_message_id
    url = reverse("sms-receipt", args=["default"])

    refused = client.post(url, {"id": provider_id, "status": "delivered"}, content_type="application/json")
    accepted = client.post(
        url,
        {"id": provider_id, "status": "rejected"},
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer default-route-token",
    )

    assert_api_error(refused, status=403, code="FORBIDDEN")
    assert accepted.status_code == 200
    delivery = api.get(session_url(session_id)).json()["data"]["delivery"]
    assert (delivery["status"], delivery["route"], delivery["deliveredAt"]) == ("rejected", "default", None)
