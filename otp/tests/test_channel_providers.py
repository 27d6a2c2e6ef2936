"""The WhatsApp and voice backends (API.md section 15) against fakes that speak each provider's wire
format over a real socket: what is sent, transient and permanent errors, signed statuses and events (good
and bad signatures), WhatsApp's GET handshake, and route validation."""

import json
import logging
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.http import QueryDict
from django.urls import reverse
from twilio.request_validator import RequestValidator

from otp.delivery import SmsRetryLater, sms_deliver
from otp.models import SmsAttempt, SmsMessage
from otp.tests.helpers import request_otp, session_url
from senders.gateways import (
    OutgoingSms,
    PermanentGatewayError,
    TransientGatewayError,
    backend_class,
    get_gateway,
)
from senders.gateways import twilio_voice as twilio_voice_module
from senders.gateways.jwt import JwtInvalid, sign_hs256, verify_hs256
from senders.gateways.transport import post
from senders.gateways.twilio_voice import say_voice
from senders.gateways.vonage_voice import talk_language
from senders.gateways.whatsapp import template_language
from senders.models import Route
from senders.routes import route_create, route_settings_problem
from senders.tests.fake_channels import (
    TWILIO_FROM,
    VONAGE_API_KEY,
    VONAGE_APPLICATION_ID,
    VONAGE_PRIVATE_KEY,
    VONAGE_VOICE_FROM,
    VONAGE_VOICE_SIGNATURE_SECRET,
    WA_ACCESS_TOKEN,
    WA_APP_SECRET,
    WA_PHONE_NUMBER_ID,
    WA_TEMPLATE,
    WA_VERIFY_TOKEN,
    FakeTwilioCalls,
    FakeVonageVoice,
    FakeWhatsApp,
    spoken,
    vonage_event_authorization,
    vonage_event_body,
    whatsapp_error,
    whatsapp_signature,
    whatsapp_status_body,
)
from senders.tests.fake_providers import FakeProvider, Scripted
from senders.tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from zeckta.errors import ValidationFailed
from zeckta.testing import DEST, assert_api_error, run_command

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://otp.example.com"
CODE = "482913"


def started(fake: FakeProvider, settings) -> Iterator:
    settings.PUBLIC_URL = PUBLIC_URL
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_whatsapp(settings):
    yield from started(FakeWhatsApp(), settings)


@pytest.fixture
def fake_calls(settings):
    yield from started(FakeTwilioCalls(), settings)


@pytest.fixture
def fake_vonage_voice(settings):
    yield from started(FakeVonageVoice(), settings)


def whatsapp_values(fake: FakeProvider, **overrides: str) -> dict[str, str]:
    return {
        "phone_number_id": WA_PHONE_NUMBER_ID,
        "access_token": WA_ACCESS_TOKEN,
        "template_name": WA_TEMPLATE,
        "app_secret": WA_APP_SECRET,
        "verify_token": WA_VERIFY_TOKEN,
        "base_url": fake.base_url,
        "timeout": "1",
        **overrides,
    }


def twilio_voice_values(fake: FakeProvider, **overrides: str) -> dict[str, str]:
    return {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "from": TWILIO_FROM,
        "base_url": fake.base_url,
        "timeout": "1",
        **overrides,
    }


def vonage_voice_values(fake: FakeProvider, **overrides: str) -> dict[str, str]:
    return {
        "application_id": VONAGE_APPLICATION_ID,
        "private_key": VONAGE_PRIVATE_KEY,
        "from": VONAGE_VOICE_FROM,
        "signature_secret": VONAGE_VOICE_SIGNATURE_SECRET,
        "api_key": VONAGE_API_KEY,
        "base_url": fake.base_url,
        "timeout": "1",
        **overrides,
    }


def outgoing(channel: str, text: str, *, locale: str = "en", receipt_url: str = "") -> OutgoingSms:
    return OutgoingSms(
        to=DEST, src="ZECKTA", text=text, reference="ref-1", receipt_url=receipt_url, channel=channel, locale=locale
    )


def voice_text(code: str = CODE) -> str:
    return f"Your verification code is: {', '.join(code)}."


def sent_through(api, route: Route) -> tuple[str, SmsAttempt]:
    """A session whose send went through `route` (its channel's): the attempt a status or event names."""
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    message = SmsMessage.objects.get(session__public_id=session_id)
    SmsMessage.objects.filter(pk=message.pk).update(channel=backend_class(route.backend).channel)
    for _ in range(10):
        try:
            assert sms_deliver(message_id=message.pk) == "sent"
            break
        except SmsRetryLater as retry:
            assert not retry.countdown
    attempt = SmsAttempt.objects.get(message=message)
    assert attempt.route_key == str(route.public_id) and attempt.provider_message_id
    return session_id, attempt


def delivery(api, session_id: str) -> dict:
    return api.get(session_url(session_id)).json()["data"]["delivery"]


def receipt_path(route: Route) -> str:
    return reverse("sms-receipt", args=[route.public_id])


# --- WhatsApp: the send --------------------------------------------------------------------------------


def test_whatsapp_sends_the_authentication_template_with_the_code_twice(fake_whatsapp):
    gateway = get_gateway("whatsapp", whatsapp_values(fake_whatsapp))

    result = gateway.send(outgoing("whatsapp", CODE, locale="pt-BR"))

    [call] = fake_whatsapp.accepted
    assert call.path == f"/v23.0/{WA_PHONE_NUMBER_ID}/messages"
    assert call.headers["authorization"] == f"Bearer {WA_ACCESS_TOKEN}"
    assert call.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": DEST,
        "type": "template",
        "template": {
            "name": WA_TEMPLATE,
            "language": {"code": "pt_BR"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": CODE}]},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": CODE}]},
            ],
        },
    }
    assert result.provider_message_id == "wamid.HBgLMjMzMjAyMDA3NzQ1FQIAERgS00000001"
    assert result.provider_status == "accepted"


@pytest.mark.parametrize(
    "locale, code",
    [
        ("en", "en"),
        ("en-US", "en_US"),
        ("fr", "fr"),
        ("fr-CA", "fr"),
        ("pt", "pt_BR"),
        ("pt-BR", "pt_BR"),
        ("pt-PT", "pt_PT"),
        ("es", "es"),
        ("es-MX", "es_MX"),
        ("ar", "ar"),
        ("ar-EG", "ar"),
        ("sw", "sw"),
        ("sw-KE", "sw"),
        ("zh-Hant-TW", "zh_TW"),
        ("xx", "en"),
        ("", "en"),
    ],
)
def test_a_locale_maps_to_metas_template_language(locale, code):
    assert template_language(locale) == code


def test_template_languages_name_the_languages_the_template_was_approved_in(fake_whatsapp):
    gateway = get_gateway("whatsapp", whatsapp_values(fake_whatsapp, template_languages="en_US, fr, es"))

    for locale in ("es-MX", "fr-CA", "en-GB", "de"):
        gateway.send(outgoing("whatsapp", CODE, locale=locale))

    languages = [call.json["template"]["language"]["code"] for call in fake_whatsapp.accepted]
    assert languages == ["es", "fr", "en_US", "en_US"]  # de: none approved, the first listed


def test_the_whatsapp_fake_refuses_what_meta_refuses(fake_whatsapp):
    def refused(**changes) -> dict:
        body = {
            "messaging_product": "whatsapp",
            "to": DEST,
            "type": "template",
            "template": {
                "name": WA_TEMPLATE,
                "language": {"code": "en"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": CODE}]},
                    {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": CODE}]},
                ],
            },
        }
        body.update(changes)
        answer = post(
            f"{fake_whatsapp.base_url}/v23.0/{WA_PHONE_NUMBER_ID}/messages",
            body=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {WA_ACCESS_TOKEN}", "Content-Type": "application/json"},
            timeout=2,
        )
        return {"status": answer.status, "code": json.loads(answer.body).get("error", {}).get("code")}

    one_parameter = [{"type": "body", "parameters": [{"type": "text", "text": CODE}]}]
    assert refused(to=DEST.lstrip("+")) == {"status": 400, "code": 131009}
    assert refused(messaging_product="sms") == {"status": 400, "code": 100}
    assert refused(template={"name": "other", "language": {"code": "en"}, "components": one_parameter}) == {
        "status": 404,
        "code": 132001,
    }
    assert refused(template={"name": WA_TEMPLATE, "language": {"code": "en"}, "components": one_parameter}) == {
        "status": 400,
        "code": 132000,
    }
    assert not fake_whatsapp.accepted


def test_a_whatsapp_template_without_the_sessions_language_fails_for_good(fake_whatsapp):
    gateway = get_gateway("whatsapp", whatsapp_values(fake_whatsapp))

    with pytest.raises(PermanentGatewayError) as refused:
        gateway.send(outgoing("whatsapp", CODE, locale="de"))  # Meta has de; the fake's template does not

    assert refused.value.error_code == "132001"


def test_a_wrong_whatsapp_token_is_a_permanent_error_that_names_no_secret(fake_whatsapp, caplog):
    gateway = get_gateway("whatsapp", whatsapp_values(fake_whatsapp, access_token="EAA-wrong"))

    with pytest.raises(PermanentGatewayError) as refused:
        gateway.send(outgoing("whatsapp", CODE))

    assert refused.value.error_code == "190"
    for shown in (str(refused.value), repr(gateway), repr(outgoing("whatsapp", CODE)), caplog.text):
        assert CODE not in shown and "EAA-wrong" not in shown and WA_APP_SECRET not in shown


@pytest.mark.parametrize(
    "status, body, transient",
    [
        (400, whatsapp_error(130429, "Rate limit hit"), True),
        (400, whatsapp_error(131056, "(Business Account, Consumer Account) pair rate limit hit"), True),
        (400, whatsapp_error(80007, "Rate limit issues"), True),
        (500, whatsapp_error(1, "An unknown error occurred"), True),
        (503, {}, True),
        (400, whatsapp_error(131026, "Message undeliverable"), False),
        (400, whatsapp_error(100, "Invalid parameter"), False),
    ],
)
def test_whatsapp_errors_are_transient_or_permanent_by_metas_code(fake_whatsapp, status, body, transient):
    fake_whatsapp.answer(Scripted(status=status, body=body))
    gateway = get_gateway("whatsapp", whatsapp_values(fake_whatsapp))

    with pytest.raises(TransientGatewayError if transient else PermanentGatewayError) as raised:
        gateway.send(outgoing("whatsapp", CODE))

    assert transient == isinstance(raised.value, TransientGatewayError)
    assert raised.value.error_code == str(body["error"]["code"] if body else status)


def test_a_whatsapp_time_out_is_transient(fake_whatsapp):
    fake_whatsapp.answer(Scripted(delay=1.5))
    gateway = get_gateway("whatsapp", whatsapp_values(fake_whatsapp, timeout="0.5"))

    with pytest.raises(TransientGatewayError, match="timed out"):
        gateway.send(outgoing("whatsapp", CODE))


# --- WhatsApp: statuses and the handshake ---------------------------------------------------------------


@pytest.fixture
def whatsapp_route(fake_whatsapp) -> Route:
    return route_create(name="whatsapp", backend="whatsapp", values=whatsapp_values(fake_whatsapp), priority=1)


def post_status(client, route: Route, body: bytes, signature: str | None):
    headers = {"HTTP_X_HUB_SIGNATURE_256": signature} if signature is not None else {}
    return client.post(receipt_path(route), body, content_type="application/json", **headers)


def test_whatsapp_statuses_signed_with_the_app_secret_move_the_delivery(api, client, whatsapp_route):
    session_id, attempt = sent_through(api, whatsapp_route)
    sent = whatsapp_status_body(attempt.provider_message_id, "sent")
    read = whatsapp_status_body(attempt.provider_message_id, "read", timestamp=int(time.time()) - 5)

    assert post_status(client, whatsapp_route, sent, whatsapp_signature(sent)).status_code == 200
    assert delivery(api, session_id)["status"] == "sent"
    assert post_status(client, whatsapp_route, read, whatsapp_signature(read)).status_code == 200

    attempt.refresh_from_db()
    assert attempt.status == "delivered" and attempt.provider_status == "read"
    assert abs(attempt.receipt_at.timestamp() - (time.time() - 5)) < 2  # the status's own time
    assert delivery(api, session_id)["status"] == "delivered"


def test_a_failed_whatsapp_status_is_final_with_metas_error_code(api, client, whatsapp_route):
    session_id, attempt = sent_through(api, whatsapp_route)
    failed = whatsapp_status_body(
        attempt.provider_message_id, "failed", errors=[{"code": 131026, "title": "Message undeliverable"}]
    )
    late = whatsapp_status_body(attempt.provider_message_id, "delivered")

    assert post_status(client, whatsapp_route, failed, whatsapp_signature(failed)).status_code == 200
    assert post_status(client, whatsapp_route, late, whatsapp_signature(late)).status_code == 200

    attempt.refresh_from_db()
    assert (attempt.status, attempt.provider_status, attempt.error_code) == ("undeliverable", "failed", "131026")
    assert delivery(api, session_id)["status"] == "undeliverable"


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        whatsapp_signature(b"another body"),
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        "sha256=" + "é" * 64,
    ],
)
def test_a_whatsapp_status_without_the_apps_signature_is_refused_and_changes_nothing(
    api, client, whatsapp_route, signature
):
    session_id, attempt = sent_through(api, whatsapp_route)
    body = whatsapp_status_body(attempt.provider_message_id, "delivered")

    response = post_status(client, whatsapp_route, body, signature)

    assert_api_error(response, status=403, code="FORBIDDEN")
    attempt.refresh_from_db()
    assert attempt.status == "accepted"
    assert delivery(api, session_id)["status"] == "sent"


def test_a_status_signed_with_another_apps_secret_is_refused(api, client, whatsapp_route):
    _, attempt = sent_through(api, whatsapp_route)
    body = whatsapp_status_body(attempt.provider_message_id, "delivered")

    response = post_status(client, whatsapp_route, body, whatsapp_signature(body, secret="another-app"))

    assert_api_error(response, status=403, code="FORBIDDEN")


def test_statuses_of_another_phone_number_are_not_this_routes(api, client, whatsapp_route):
    session_id, attempt = sent_through(api, whatsapp_route)
    body = whatsapp_status_body(attempt.provider_message_id, "delivered", phone_number_id="999999999")

    assert post_status(client, whatsapp_route, body, whatsapp_signature(body)).status_code == 200

    assert delivery(api, session_id)["status"] == "sent"


def test_the_whatsapp_handshake_answers_the_challenge_for_the_routes_verify_token(client, whatsapp_route):
    query = {"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY_TOKEN, "hub.challenge": "1158201444"}

    response = client.get(receipt_path(whatsapp_route) + "?" + urlencode(query))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content == b"1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "not-the-token", "hub.challenge": "1158201444"},
        {"hub.mode": "unsubscribe", "hub.verify_token": WA_VERIFY_TOKEN, "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.verify_token": "é", "hub.challenge": "1158201444"},
        {"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY_TOKEN},
    ],
)
def test_a_whatsapp_handshake_with_a_wrong_token_gets_403(client, whatsapp_route, query):
    response = client.get(receipt_path(whatsapp_route) + "?" + urlencode(query))

    body = assert_api_error(response, status=403, code="FORBIDDEN")
    assert "1158201444" not in json.dumps(body)


def test_a_get_on_the_receipt_url_of_a_backend_without_handshake_stays_405(client, fake_calls):
    route = route_create(name="call", backend="twilio_voice", values=twilio_voice_values(fake_calls))

    assert_api_error(client.get(receipt_path(route) + "?hub.challenge=1"), status=405, code="METHOD_NOT_ALLOWED")
    assert_api_error(client.get("/v1/webhooks/sms/default"), status=405, code="METHOD_NOT_ALLOWED")


def test_a_handshake_on_an_unknown_route_is_404(client):
    response = client.get("/v1/webhooks/sms/00000000-0000-4000-8000-000000000000?hub.mode=subscribe")

    assert response.status_code == 404


# --- WhatsApp: route settings ---------------------------------------------------------------------------


def test_a_whatsapp_route_needs_every_setting_and_a_phone_number_id(fake_whatsapp):
    values = whatsapp_values(fake_whatsapp)
    for name in ("phone_number_id", "access_token", "template_name", "app_secret", "verify_token"):
        with pytest.raises(ValidationFailed, match=name):
            route_create(name="wa", backend="whatsapp", values={k: v for k, v in values.items() if k != name})
    with pytest.raises(ValidationFailed, match="phone_number_id is the WhatsApp phone number's id"):
        route_create(name="wa", backend="whatsapp", values={**values, "phone_number_id": "+233202007745"})
    with pytest.raises(ValidationFailed, match="template_languages names codes Meta does not support: en-US"):
        route_create(name="wa", backend="whatsapp", values={**values, "template_languages": "fr,en-US"})
    with pytest.raises(ValidationFailed, match="Graph API version"):
        route_create(name="wa", backend="whatsapp", values={**values, "version": "21"})
    assert not Route.objects.exists()


def test_a_whatsapp_route_needs_an_https_public_url(fake_whatsapp, settings):
    settings.PUBLIC_URL = "http://otp.example.com"
    with pytest.raises(ValidationFailed, match="HTTPS only"):
        route_create(name="wa", backend="whatsapp", values=whatsapp_values(fake_whatsapp))


def test_add_route_adds_a_whatsapp_route(fake_whatsapp):
    settings_args = [
        arg for name, value in whatsapp_values(fake_whatsapp).items() for arg in ("--setting", f"{name}={value}")
    ]

    [*_, route_id] = run_command("add_route", "wa", "--backend", "whatsapp", *settings_args)

    route = Route.objects.get()
    assert str(route.public_id) == route_id and route.backend == "whatsapp"
    assert backend_class(route.backend).channel == "whatsapp"


# --- Twilio voice ----------------------------------------------------------------------------------------


def test_a_twilio_call_says_the_code_twice_in_the_sessions_language(fake_calls):
    gateway = get_gateway("twilio_voice", twilio_voice_values(fake_calls))
    receipt_url = f"{PUBLIC_URL}/v1/webhooks/sms/route-id"

    result = gateway.send(outgoing("voice", voice_text(), locale="fr", receipt_url=receipt_url))

    [call] = fake_calls.accepted
    assert call.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert (call.form["To"], call.form["From"]) == (DEST, TWILIO_FROM)
    says = spoken(call.form["Twiml"])
    assert says == [("fr-FR", "Polly.Celine", voice_text())] * 2
    assert '<Pause length="1"/>' in call.form["Twiml"]
    form = parse_qs(call.raw.decode())
    assert form["StatusCallback"] == [receipt_url] and form["StatusCallbackMethod"] == ["POST"]
    assert form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert result.provider_message_id == "CA00000000000000000000000000000001"


def test_a_calls_text_is_escaped_as_xml(fake_calls):
    gateway = get_gateway("twilio_voice", twilio_voice_values(fake_calls))
    text = "Code <1> & \"2\" '3'"

    gateway.send(outgoing("voice", text))

    [call] = fake_calls.accepted
    assert [said for _, _, said in spoken(call.form["Twiml"])] == [text, text]


@pytest.mark.parametrize(
    "locale, language, voice",
    [
        ("en", "en-US", "Polly.Joanna"),
        ("en-GB", "en-GB", "Polly.Amy"),
        ("fr-FR", "fr-FR", "Polly.Celine"),
        ("pt", "pt-BR", "Polly.Camila"),
        ("pt-PT", "pt-PT", "Polly.Ines"),
        ("es", "es-ES", "Polly.Lucia"),
        ("ar", "arb", "Polly.Zeina"),
        ("sw", "en-US", "Polly.Joanna"),  # Twilio has no Swahili voice
        ("", "en-US", "Polly.Joanna"),
    ],
)
def test_a_locale_maps_to_a_twilio_voice(locale, language, voice):
    assert say_voice(locale) == (language, voice)


def test_twiml_over_twilios_limit_fails_for_good_without_a_call(fake_calls):
    gateway = get_gateway("twilio_voice", twilio_voice_values(fake_calls))

    with pytest.raises(PermanentGatewayError, match="over Twilio's 4000"):
        gateway.send(outgoing("voice", "9, " * 700))

    assert fake_calls.calls == []


def test_the_twilio_calls_fake_refuses_twiml_over_4000_characters(fake_calls, monkeypatch):
    monkeypatch.setattr(twilio_voice_module, "TWIML_MAX_CHARS", 10_000)  # as if the client did not check
    gateway = get_gateway("twilio_voice", twilio_voice_values(fake_calls))

    with pytest.raises(PermanentGatewayError) as refused:
        gateway.send(outgoing("voice", "9, " * 700))

    assert refused.value.error_code == "21218" and not fake_calls.accepted


@pytest.mark.parametrize(
    "values, status, error_type, code",
    [
        ({"auth_token": "wrong"}, None, PermanentGatewayError, "20003"),
        ({}, 429, TransientGatewayError, "20429"),
        ({}, 500, TransientGatewayError, "20500"),
        ({}, 400, PermanentGatewayError, "21215"),
    ],
)
def test_twilio_call_errors_are_transient_or_permanent(fake_calls, values, status, error_type, code):
    if status is not None:
        fake_calls.answer(Scripted(status=status, body={"code": int(code), "message": "scripted", "status": status}))
    gateway = get_gateway("twilio_voice", twilio_voice_values(fake_calls, **values))

    with pytest.raises(error_type) as raised:
        gateway.send(outgoing("voice", voice_text()))

    assert raised.value.error_code == code
    assert CODE not in str(raised.value) and ", ".join(CODE) not in str(raised.value)


@pytest.fixture
def call_route(fake_calls) -> Route:
    return route_create(name="call", backend="twilio_voice", values=twilio_voice_values(fake_calls), priority=1)


def post_call_status(client, route: Route, form: dict[str, str], *, token: str = AUTH_TOKEN):
    """Twilio's status callback, signed by twilio-python's RequestValidator (not by the service's code)."""
    path = receipt_path(route)
    body = urlencode(form)
    signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, QueryDict(body))
    return client.post(path, body, content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature)


def call_form(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": ACCOUNT_SID,
        "CallStatus": status,
        "Direction": "outbound-api",
        "To": DEST,
        "From": TWILIO_FROM,
        "ApiVersion": "2010-04-01",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "0",
        **extra,
    }


def test_a_completed_call_is_delivered(api, client, call_route):
    session_id, attempt = sent_through(api, call_route)
    sid = attempt.provider_message_id

    for sequence, status in enumerate(["initiated", "ringing", "in-progress"]):
        response = post_call_status(client, call_route, call_form(sid, status, SequenceNumber=str(sequence)))
        assert response.status_code == 200
    assert delivery(api, session_id)["status"] == "sent"
    assert post_call_status(client, call_route, call_form(sid, "completed", CallDuration="14")).status_code == 200

    attempt.refresh_from_db()
    assert (attempt.status, attempt.provider_status) == ("delivered", "completed")
    assert delivery(api, session_id)["status"] == "delivered"


@pytest.mark.parametrize("call_status", ["busy", "failed", "no-answer", "canceled"])
def test_a_call_that_reached_nobody_fails_for_good(api, client, call_route, call_status):
    session_id, attempt = sent_through(api, call_route)

    form = call_form(attempt.provider_message_id, call_status, SipResponseCode="486")
    assert post_call_status(client, call_route, form).status_code == 200
    assert post_call_status(client, call_route, call_form(attempt.provider_message_id, "completed")).status_code == 200

    attempt.refresh_from_db()
    assert (attempt.status, attempt.provider_status, attempt.error_code) == ("undeliverable", call_status, "486")
    assert delivery(api, session_id)["status"] == "undeliverable"


def test_a_call_status_with_a_bad_signature_is_refused_and_changes_nothing(api, client, call_route):
    session_id, attempt = sent_through(api, call_route)

    response = post_call_status(client, call_route, call_form(attempt.provider_message_id, "completed"), token="x")
    unsigned = client.post(
        receipt_path(call_route),
        urlencode(call_form(attempt.provider_message_id, "completed")),
        content_type="application/x-www-form-urlencoded",
    )

    assert_api_error(response, status=403, code="FORBIDDEN")
    assert_api_error(unsigned, status=403, code="FORBIDDEN")
    assert delivery(api, session_id)["status"] == "sent"


def test_a_twilio_voice_route_needs_a_from_number(fake_calls):
    values = twilio_voice_values(fake_calls)
    with pytest.raises(ValidationFailed, match="from"):
        route_create(name="call", backend="twilio_voice", values={k: v for k, v in values.items() if k != "from"})
    with pytest.raises(ValidationFailed, match="E.164"):
        route_create(name="call", backend="twilio_voice", values={**values, "from": "ZECKTA"})
    with pytest.raises(ValidationFailed, match="takes no setting"):
        route_create(name="call", backend="twilio_voice", values={**values, "messaging_service_sid": "MG1"})


# --- Vonage voice ----------------------------------------------------------------------------------------


def test_a_vonage_call_carries_a_jwt_vonage_accepts_and_an_ncco_that_talks_twice(fake_vonage_voice):
    gateway = get_gateway("vonage_voice", vonage_voice_values(fake_vonage_voice))
    receipt_url = f"{PUBLIC_URL}/v1/webhooks/sms/route-id"

    result = gateway.send(outgoing("voice", voice_text(), locale="pt-BR", receipt_url=receipt_url))

    [call] = fake_vonage_voice.accepted
    talk = {"action": "talk", "text": voice_text(), "language": "pt-BR"}
    assert call.json == {
        "to": [{"type": "phone", "number": DEST.lstrip("+")}],
        "from": {"type": "phone", "number": VONAGE_VOICE_FROM},
        "ncco": [talk, talk],
        "event_url": [receipt_url],
        "event_method": "POST",
    }
    assert result.provider_message_id == "00000000-0000-0000-0000-000000000001"
    assert result.provider_status == "started"


@pytest.mark.parametrize(
    "locale, language",
    [
        ("en", "en-US"),
        ("fr", "fr-FR"),
        ("pt", "pt-BR"),
        ("pt-PT", "pt-PT"),
        ("es", "es-ES"),
        ("ar", "ar"),
        ("sw", "en-US"),
    ],
)
def test_a_locale_maps_to_a_vonage_talk_language(locale, language):
    assert talk_language(locale) == language


def test_a_call_signed_with_another_private_key_is_refused_for_good(fake_vonage_voice):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    gateway = get_gateway("vonage_voice", vonage_voice_values(fake_vonage_voice, private_key=pem))

    with pytest.raises(PermanentGatewayError) as refused:
        gateway.send(outgoing("voice", voice_text()))

    assert refused.value.error_code == "401" and not fake_vonage_voice.accepted
    assert "PRIVATE KEY" not in str(refused.value)


def test_a_call_for_another_application_is_refused(fake_vonage_voice):
    gateway = get_gateway("vonage_voice", vonage_voice_values(fake_vonage_voice, application_id="another-app"))

    with pytest.raises(PermanentGatewayError):
        gateway.send(outgoing("voice", voice_text()))

    assert not fake_vonage_voice.accepted


@pytest.mark.parametrize("status, transient", [(429, True), (500, True), (503, True), (400, False), (402, False)])
def test_vonage_call_errors_are_transient_or_permanent(fake_vonage_voice, status, transient):
    fake_vonage_voice.answer(Scripted(status=status, body={"type": "about:blank", "title": "scripted"}))
    gateway = get_gateway("vonage_voice", vonage_voice_values(fake_vonage_voice))

    with pytest.raises(TransientGatewayError if transient else PermanentGatewayError) as raised:
        gateway.send(outgoing("voice", voice_text()))

    assert raised.value.error_code == str(status)


@pytest.fixture
def vonage_call_route(fake_vonage_voice) -> Route:
    return route_create(
        name="vonage-call", backend="vonage_voice", values=vonage_voice_values(fake_vonage_voice), priority=1
    )


def post_event(client, route: Route, body: bytes, authorization: str | None):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return client.post(receipt_path(route), body, content_type="application/json", **headers)


def test_signed_vonage_events_move_the_delivery(api, client, vonage_call_route):
    session_id, attempt = sent_through(api, vonage_call_route)
    call_uuid = attempt.provider_message_id

    for status in ("started", "ringing", "answered"):
        body = vonage_event_body(call_uuid, status)
        assert post_event(client, vonage_call_route, body, vonage_event_authorization(body)).status_code == 200
    assert delivery(api, session_id)["status"] == "sent"
    completed = vonage_event_body(call_uuid, "completed", duration="12")
    assert post_event(client, vonage_call_route, completed, vonage_event_authorization(completed)).status_code == 200

    attempt.refresh_from_db()
    assert (attempt.status, attempt.provider_status) == ("delivered", "completed")
    assert delivery(api, session_id)["status"] == "delivered"


@pytest.mark.parametrize("status", ["busy", "cancelled", "failed", "rejected", "timeout", "unanswered"])
def test_a_vonage_call_that_reached_nobody_fails_for_good(api, client, vonage_call_route, status):
    session_id, attempt = sent_through(api, vonage_call_route)
    body = vonage_event_body(attempt.provider_message_id, status)

    assert post_event(client, vonage_call_route, body, vonage_event_authorization(body)).status_code == 200

    attempt.refresh_from_db()
    assert (attempt.status, attempt.provider_status) == ("undeliverable", status)


def test_vonage_events_that_fail_the_signature_are_refused_and_change_nothing(api, client, vonage_call_route):
    session_id, attempt = sent_through(api, vonage_call_route)
    body = vonage_event_body(attempt.provider_message_id, "completed")
    other = vonage_event_body(attempt.provider_message_id, "ringing")
    token = vonage_event_authorization(body).removeprefix("Bearer ")
    header, claims, signature = token.split(".")

    refused = [
        post_event(client, vonage_call_route, body, None),
        post_event(client, vonage_call_route, body, vonage_event_authorization(body, secret="another-secret")),
        post_event(client, vonage_call_route, body, vonage_event_authorization(other)),  # another body's hash
        post_event(client, vonage_call_route, body, vonage_event_authorization(body, iat=time.time() - 301)),
        post_event(client, vonage_call_route, body, vonage_event_authorization(body, api_key="someone-else")),
        post_event(client, vonage_call_route, body, f"Bearer {header}.{claims}."),
        post_event(client, vonage_call_route, body, "Bearer eyJhbGciOiJub25lIn0.e30."),  # alg none
        post_event(client, vonage_call_route, body, "Bearer é.é.é"),
    ]

    for response in refused:
        assert_api_error(response, status=403, code="FORBIDDEN")
    attempt.refresh_from_db()
    assert attempt.status == "accepted"
    assert delivery(api, session_id)["status"] == "sent"
    assert signature  # the real one, had it been sent with this body, is accepted:
    assert post_event(client, vonage_call_route, body, f"Bearer {token}").status_code == 200


def test_a_vonage_voice_route_needs_a_private_key_that_parses(fake_vonage_voice):
    values = vonage_voice_values(fake_vonage_voice)
    with pytest.raises(ValidationFailed, match="private_key is the Vonage application's private key"):
        route_create(name="vc", backend="vonage_voice", values={**values, "private_key": "not a key"})
    with pytest.raises(ValidationFailed, match="signature_secret"):
        route_create(
            name="vc", backend="vonage_voice", values={k: v for k, v in values.items() if k != "signature_secret"}
        )
    with pytest.raises(ValidationFailed, match="international digits"):
        route_create(name="vc", backend="vonage_voice", values={**values, "from": "ZECKTA"})
    assert not Route.objects.exists()


def test_no_secret_of_a_vonage_call_reaches_a_log_line(api, client, vonage_call_route, caplog):
    caplog.set_level(logging.DEBUG)
    _, attempt = sent_through(api, vonage_call_route)
    body = vonage_event_body(attempt.provider_message_id, "completed")
    post_event(client, vonage_call_route, body, vonage_event_authorization(body, secret="wrong"))

    for secret in (VONAGE_VOICE_SIGNATURE_SECRET, "BEGIN PRIVATE KEY"):
        assert secret not in caplog.text


# --- The JWT functions -----------------------------------------------------------------------------------


def test_hs256_verification_takes_only_hs256_with_the_secret():
    token = sign_hs256({"a": 1}, "s3cret")
    assert verify_hs256(token, "s3cret") == {"a": 1}
    for bad in (token + "x", token.replace(".", "", 1), "a.b", ""):
        with pytest.raises(JwtInvalid):
            verify_hs256(bad, "s3cret")
    with pytest.raises(JwtInvalid):
        verify_hs256(token, "other")
    with pytest.raises(JwtInvalid):
        verify_hs256(token, "")


# --- One source per fact: the settings section 15 names -------------------------------------------------

SECTION_15_REQUIRED = {
    "whatsapp": {
        "phone_number_id": "106540352242922",
        "access_token": "t",
        "template_name": "otp",
        "app_secret": "s",
        "verify_token": "v",
    },
    "twilio_voice": {"account_sid": "AC1", "auth_token": "t", "from": "+14155550100"},
    "vonage_voice": {
        "application_id": "a",
        "private_key": VONAGE_PRIVATE_KEY,
        "from": "447700900000",
        "signature_secret": "s",
    },
}


@pytest.mark.parametrize("backend", sorted(SECTION_15_REQUIRED))
def test_route_validation_and_the_gateway_ask_for_the_same_channel_settings(backend):
    values = SECTION_15_REQUIRED[backend]
    assert route_settings_problem(backend, values) is None
    assert route_settings_problem(backend, {**values, "base_url": "https://proxy.example.com"}) is None
    get_gateway(backend, values)
    for name in values:
        without = {other: value for other, value in values.items() if other != name}
        assert name in (route_settings_problem(backend, without) or "")
        with pytest.raises(PermanentGatewayError, match=name):
            get_gateway(backend, without)


def test_the_admin_adds_a_vonage_voice_route_and_refuses_a_key_that_does_not_parse(admin_client, fake_vonage_voice):
    def add(values: dict[str, str]):
        return admin_client.post(
            reverse("admin:senders_route_add"),
            {
                "name": "vonage-call",
                "backend": "vonage_voice",
                "new_settings": json.dumps(values),
                "countries": "",
                "priority": "1",
                "enabled": "on",
            },
        )

    refused = add(vonage_voice_values(fake_vonage_voice, private_key="-----BEGIN PRIVATE KEY-----\nxx"))
    assert refused.status_code == 200
    assert "private_key is the Vonage application" in str(refused.context["adminform"].form.errors)
    assert not Route.objects.exists()

    assert add(vonage_voice_values(fake_vonage_voice)).status_code == 302
    route = Route.objects.get()
    assert route.backend == "vonage_voice" and backend_class(route.backend).channel == "voice"
