"""Issue 21's "done when", end to end through the real providers' fakes (API.md section 15): a French LOGIN
request by WhatsApp in a workspace whose order is WhatsApp, SMS, voice. Meta reports the template `failed`
(a signed status webhook, as Meta posts it): an SMS with a fresh code goes out through a Twilio SMS route
at once; no receipt says it arrived, so once `fallbackAfterSeconds` is over a call reads a third code
out, in French. The call's code approves, the two earlier ones do not.

Everything between the fakes is real: the HTTP API, PostgreSQL, the Redis broker and a Celery worker
process with its embedded beat (the timer is the beat's scan of `fallback_at`). The second run kills the
worker between the SMS and the timer and starts another one: the call still happens, and each provider
got exactly one send."""

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.http import QueryDict
from django.urls import reverse
from twilio.request_validator import RequestValidator

from otp.models import OtpSession, SmsAttempt, SmsMessage
from otp.templating import default_template, voice_text
from otp.tests.helpers import request_otp, session_url, verify
from otp.tests.processes import WorkerProcess
from senders.models import Route
from senders.routes import route_create
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
from senders.tests.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from webhooks.models import Event
from webhooks.tests.factories import endpoint_for
from workspaces.models import Workspace
from zeckta.celery import app as celery_app
from zeckta.testing import DEST, wait_for

pytestmark = [pytest.mark.slow]

PUBLIC_URL = "https://otp.example.com"
FALLBACK_AFTER_SECONDS = 5  # the least a workspace may set
UNITS = {"whatsapp": 3, "sms": 2, "voice": 4}  # per WhatsApp message, per SMS segment, per call


@dataclass
class Fakes:
    whatsapp: FakeWhatsApp
    sms: FakeTwilio
    twilio_calls: FakeTwilioCalls
    vonage_calls: FakeVonageVoice


@pytest.fixture
def fakes(settings) -> Iterator[Fakes]:
    settings.PUBLIC_URL = PUBLIC_URL  # the receipt URLs the worker gives out and this process checks
    started = Fakes(FakeWhatsApp(), FakeTwilio(), FakeTwilioCalls(), FakeVonageVoice())
    for fake in vars(started).values():
        fake.start()
    yield started
    for fake in vars(started).values():
        fake.stop()


def routes(fakes: Fakes, voice_backend: str) -> dict[str, Route]:
    whatsapp = route_create(
        name="whatsapp",
        backend="whatsapp",
        values={
            "phone_number_id": WA_PHONE_NUMBER_ID,
            "access_token": WA_ACCESS_TOKEN,
            "template_name": WA_TEMPLATE,
            "app_secret": WA_APP_SECRET,
            "verify_token": WA_VERIFY_TOKEN,
            "base_url": fakes.whatsapp.base_url,
        },
    )
    sms = route_create(
        name="twilio-sms",
        backend="twilio",
        values={"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "base_url": fakes.sms.base_url},
    )
    if voice_backend == "twilio_voice":
        voice_values = {
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from": TWILIO_FROM,
            "base_url": fakes.twilio_calls.base_url,
        }
    else:
        voice_values = {
            "application_id": VONAGE_APPLICATION_ID,
            "private_key": VONAGE_PRIVATE_KEY,
            "from": VONAGE_VOICE_FROM,
            "signature_secret": VONAGE_VOICE_SIGNATURE_SECRET,
            "api_key": VONAGE_API_KEY,
            "base_url": fakes.vonage_calls.base_url,
        }
    voice = route_create(name="calls", backend=voice_backend, values=voice_values)
    return {"whatsapp": whatsapp, "sms": sms, "voice": voice}


def sends(session_id: str) -> list[tuple[str, str]]:
    return list(
        SmsMessage.objects.filter(session__public_id=session_id).order_by("id").values_list("channel", "status")
    )


def provider_id(session_id: str, channel: str) -> str:
    attempt = SmsAttempt.objects.get(message__session__public_id=session_id, message__channel=channel)
    return attempt.provider_message_id


def receipt_path(route: Route) -> str:
    return reverse("sms-receipt", args=[route.public_id])


def french_sms_code(text: str) -> str:
    """The code of the French default LOGIN text, which the SMS must be word for word."""
    pattern = re.escape(default_template("LOGIN", "fr"))
    pattern = pattern.replace(re.escape("<OTP>"), r"(\d{6})").replace(re.escape("<MINUTES>"), r"\d+")
    match = re.fullmatch(pattern, text)
    assert match, text
    return match.group(1)


def spoken_code(text: str) -> str:
    """The code a call reads out, digit by digit, checked against the French voice text."""
    code = "".join(re.findall(r"\d", text))
    assert len(code) == 6 and text == voice_text(code=code, locale="fr"), text
    return code


def call_code(fakes: Fakes, voice_backend: str) -> tuple[str, str]:
    """(the code the call says, the URL its status callbacks go to), checking the call speaks French."""
    if voice_backend == "twilio_voice":
        [call] = fakes.twilio_calls.accepted
        says = spoken(call.form["Twiml"])
        assert says and len(says) == 2 and len(set(says)) == 1, says  # the code twice
        language, voice, text = says[0]
        assert (language, voice) == ("fr-FR", "Polly.Celine")
        return spoken_code(text), parse_qs(call.raw.decode())["StatusCallback"][0]
    [call] = fakes.vonage_calls.accepted
    talks = call.json["ncco"]
    assert len(talks) == 2 and talks[0] == talks[1] and talks[0]["language"] == "fr-FR", talks
    return spoken_code(talks[0]["text"]), call.json["event_url"][0]


def post_call_completed(client, route: Route, voice_backend: str, call_id: str, callback_url: str):
    """The provider's report that the call was answered and ended, signed as that provider signs it."""
    assert callback_url == PUBLIC_URL + receipt_path(route)
    path = urlsplit(callback_url).path
    if voice_backend == "twilio_voice":
        form = urlencode(
            {
                "CallSid": call_id,
                "AccountSid": ACCOUNT_SID,
                "CallStatus": "completed",
                "CallDuration": "14",
                "Direction": "outbound-api",
                "To": DEST,
                "From": TWILIO_FROM,
                "ApiVersion": "2010-04-01",
                "CallbackSource": "call-progress-events",
                "SequenceNumber": "3",
            }
        )
        signature = RequestValidator(AUTH_TOKEN).compute_signature(callback_url, QueryDict(form))
        return client.post(
            path, form, content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature
        )
    body = vonage_event_body(call_id, "completed", duration="14")
    return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=vonage_event_authorization(body))


def fallback_flow(
    client, api, workspace, receiver, fakes: Fakes, fake_gateway, *, voice_backend: str, kill: bool
) -> None:
    route = routes(fakes, voice_backend)
    Workspace.objects.filter(pk=workspace.pk).update(
        channels=["whatsapp", "sms", "voice"],
        fallback_after_seconds=FALLBACK_AFTER_SECONDS,
        destination_limit=10,
        units_per_whatsapp_message=UNITS["whatsapp"],
        units_per_sms_segment=UNITS["sms"],
        units_per_call=UNITS["voice"],
    )
    # The client's endpoint for otp.sent: the worker delivers the events to a live receiver.
    endpoint_for(workspace, receiver.url, [Event.OTP_SENT])
    env = {
        "BEAT_LOCK_TTL_SECONDS": "3",
        "OTP_FALLBACK_SCAN_SECONDS": "1",
        "PUBLIC_URL": PUBLIC_URL,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    }
    url = celery_app.conf.broker_url
    workers = [WorkerProcess(broker_url=url, gateway=fake_gateway, extra_env=env, beat=True, node="e2e-a")]
    try:
        workers[0].wait_ready()
        response = request_otp(api, DEST, channel="whatsapp", locale="fr")
        assert response.status_code == 200, response.json()
        session_id = response.json()["data"]["sessionId"]

        # 1. WhatsApp: the authentication template in French, the code as body and button parameter.
        assert wait_for(lambda: sends(session_id) == [("whatsapp", "sent")], timeout=20), workers[-1].output()
        [message] = fakes.whatsapp.accepted
        template = message.json["template"]
        assert template["language"] == {"code": "fr"}
        whatsapp_code = template["components"][0]["parameters"][0]["text"]
        assert template["components"][1]["parameters"][0]["text"] == whatsapp_code
        timer = OtpSession.objects.get(public_id=session_id).fallback_at  # the WhatsApp send's own timer
        assert timer is not None

        # Meta reports it failed (no WhatsApp on that number): signed with the app secret, at the receipt URL.
        failed = whatsapp_status_body(
            provider_id(session_id, "whatsapp"),
            "failed",
            errors=[whatsapp_error(131026, "Message undeliverable")["error"]],
        )
        reported = time.monotonic()
        answer = client.post(
            receipt_path(route["whatsapp"]),
            failed,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=whatsapp_signature(failed),
        )
        assert answer.status_code == 200, answer.content

        # 2. Within 5 s, an SMS with a fresh code, the French default text, through the Twilio SMS route.
        assert wait_for(lambda: len(fakes.sms.accepted) == 1, timeout=5), workers[-1].output()
        assert time.monotonic() - reported < 5
        [sms] = fakes.sms.accepted
        sms_code = french_sms_code(sms.form["Body"])
        # Sent because of the status, not of the timer, which had not run out yet.
        assert SmsMessage.objects.get(session__public_id=session_id, channel="sms").created_at < timer
        assert sms_code != whatsapp_code
        assert wait_for(lambda: sends(session_id)[-1] == ("sms", "sent"), timeout=5)
        sms_sent = time.monotonic()

        if kill:
            # 3. The worker dies before the SMS's fallback is due: only the session's column holds the timer.
            # (Once its otp.sent is out: an event cut off mid-delivery is retried, at least once, by design.)
            assert wait_for(lambda: receiver.calls == 2, timeout=3)
            workers[0].kill()
            session = OtpSession.objects.get(public_id=session_id)
            assert session.status == "PENDING" and session.fallback_at is not None and session.channel == "sms"
            workers.append(WorkerProcess(broker_url=url, gateway=fake_gateway, extra_env=env, beat=True, node="e2e-b"))
            workers[-1].wait_ready()

        # 4. No receipt for the SMS: once fallbackAfterSeconds is over, a call, in French, with a third code.
        calls = fakes.twilio_calls if voice_backend == "twilio_voice" else fakes.vonage_calls
        assert wait_for(lambda: len(calls.accepted) == 1, timeout=30), workers[-1].output()
        assert time.monotonic() - sms_sent >= FALLBACK_AFTER_SECONDS - 1  # not before its time
        spoken_digits, callback_url = call_code(fakes, voice_backend)
        assert spoken_digits not in (whatsapp_code, sms_code)
        done = [("whatsapp", "undeliverable"), ("sms", "sent"), ("voice", "sent")]
        assert wait_for(lambda: sends(session_id) == done, timeout=5), sends(session_id)

        # The call was answered: its provider says so, signed its way.
        answer = post_call_completed(
            client, route["voice"], voice_backend, provider_id(session_id, "voice"), callback_url
        )
        assert answer.status_code == 200, answer.content
        view = api.get(session_url(session_id)).json()["data"]
        assert view["status"] == "PENDING"
        assert (view["delivery"]["channel"], view["delivery"]["status"]) == ("voice", "delivered")

        # Nothing more goes out, and nothing went out twice: one send per provider, none by SMS_BACKEND.
        assert not wait_for(lambda: len(sends(session_id)) > 3, timeout=FALLBACK_AFTER_SECONDS + 2)
        counts = [len(f.calls) for f in (fakes.whatsapp, fakes.sms, calls)]
        assert counts == [1, 1, 1] and fake_gateway.calls == 0

        # The call's code approves; the WhatsApp and SMS codes were replaced (each costs an attempt).
        for code in (whatsapp_code, sms_code):
            assert verify(api, session_id, code).json()["data"]["status"] == "INVALID"
        approved = verify(api, session_id, spoken_digits)
        assert approved.status_code == 200 and approved.json()["data"]["status"] == "APPROVED"

        # Units per channel as the workspace prices them (the French SMS is one GSM-7 segment).
        units = list(
            SmsMessage.objects.filter(session__public_id=session_id)
            .order_by("id")
            .values_list("channel", "segments", "units")
        )
        assert units == [("whatsapp", 1, 3), ("sms", 1, 2), ("voice", 1, 4)]

        # One otp.sent event per send reached the client's endpoint, each naming its channel.
        assert wait_for(lambda: receiver.calls >= 3, timeout=15), workers[-1].output()
        events = [json.loads(request.body) for request in receiver.requests]
        assert {event["type"] for event in events} == {"otp.sent"}
        channels = sorted(event["data"]["delivery"]["channel"] for event in events)
        assert channels == ["sms", "voice", "whatsapp"] and receiver.calls == 3
        assert len({request.headers["webhook-id"] for request in receiver.requests}) == 3
    finally:
        for worker in workers:
            worker.stop()


def test_whatsapp_failed_then_sms_then_a_twilio_call_whose_code_alone_approves(
    fake_gateway, broker_queue, transactional_db, client, api, workspace, receiver, fakes
):
    fallback_flow(client, api, workspace, receiver, fakes, fake_gateway, voice_backend="twilio_voice", kill=False)


@pytest.mark.parametrize("voice_backend", ["twilio_voice", "vonage_voice"])
def test_a_worker_killed_between_the_sms_and_its_timer_loses_nothing_and_sends_nothing_twice(
    fake_gateway, broker_queue, transactional_db, client, api, workspace, receiver, fakes, voice_backend
):
    fallback_flow(client, api, workspace, receiver, fakes, fake_gateway, voice_backend=voice_backend, kill=True)
