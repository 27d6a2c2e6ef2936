"""Channels and their fallback (API.md section 15), through the dev-only locmem WhatsApp and voice backends.

The service's own paths run here as the worker and the beat would run them: `sms_deliver` for a send,
`fallbacks_run_due` for the beat's scan, receipts posted to the route's receipt URL. The same flow with a
real worker process killed between two steps is in test_fallback_worker.py.
"""

import re

import pytest
from django.urls import reverse

from otp.delivery import sms_deliver
from otp.fallback import fallbacks_run_due, otp_fall_back
from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import cancel, later, request_otp, resend, session_url, verify
from senders.gateways import locmem
from senders.models import Route
from senders.routes import channels_available, route_create, routes_for
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create
from workspaces.models import LedgerEntry, Workspace
from zeckta.testing import DEST, assert_api_error, run_together

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]

RECEIPT_TOKEN = "locmem-receipt-token"
ORDER = ["whatsapp", "sms", "voice"]


@pytest.fixture
def whatsapp_route() -> Route:
    return route_create(name="wa", backend="locmem_whatsapp", values={"receipt_token": RECEIPT_TOKEN})


@pytest.fixture
def voice_route() -> Route:
    return route_create(name="calls", backend="locmem_voice", values={"receipt_token": RECEIPT_TOKEN})


@pytest.fixture
def ordered(workspace, whatsapp_route, voice_route) -> Workspace:
    """The workspace with the order of the issue's flow, room for every send, and its default delay."""
    Workspace.objects.filter(pk=workspace.pk).update(channels=ORDER, destination_limit=10)
    workspace.refresh_from_db()
    return workspace


def send_latest(session_id: str) -> SmsMessage:
    """Runs the send task of the session's latest send, as the worker would; returns the row after it."""
    message = SmsMessage.objects.filter(session__public_id=session_id).latest("id")
    sms_deliver(message_id=message.pk)
    message.refresh_from_db()
    return message


def carried(message: SmsMessage) -> str:
    """What the backend got for a send: the SMS, the WhatsApp code, or what the call says."""
    (sent,) = [outgoing for outgoing in locmem.outbox if outgoing.reference == str(message.public_id)]
    assert sent.channel == message.channel
    return sent.text


def code_of(message: SmsMessage) -> str:
    text = carried(message)
    if message.channel == "voice":
        return "".join(re.findall(r"\d", text))  # said digit by digit: "4, 8, 2, 9, 1, 3"
    return re.search(r"\b\d{6}\b", text).group()


def post_receipt(client, route: Route, message: SmsMessage, status: str):
    return client.post(
        reverse("sms-receipt", args=[route.public_id]),
        {"id": message.provider_message_id, "status": status},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {RECEIPT_TOKEN}",
    )


def sends(session_id: str) -> list[tuple[str, str]]:
    return list(
        SmsMessage.objects.filter(session__public_id=session_id).order_by("id").values_list("channel", "status")
    )


def test_whatsapp_failed_then_sms_then_a_call_whose_code_alone_approves(api, client, ordered, whatsapp_route):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    whatsapp = send_latest(session_id)
    assert whatsapp.channel == "whatsapp" and whatsapp.status == "sent"
    assert carried(whatsapp) == code_of(whatsapp)  # the template's parameter: the code itself

    # WhatsApp says `failed` (a final failure): the next channel at once, with no client call.
    assert post_receipt(client, whatsapp_route, whatsapp, "undeliverable").status_code == 200
    assert OtpSession.objects.get(public_id=session_id).fallback_at is not None
    assert fallbacks_run_due() == 1
    sms = send_latest(session_id)
    assert (sms.channel, sms.status) == ("sms", "sent")
    assert api.get(session_url(session_id)).json()["data"]["delivery"]["channel"] == "sms"

    # Nothing says the SMS arrived within fallbackAfterSeconds (30): a call.
    with later(29):
        assert fallbacks_run_due() == 0
    with later(31):
        assert fallbacks_run_due() == 1
        call = send_latest(session_id)
        assert (call.channel, call.status) == ("voice", "sent")
        assert carried(call).count(", ") == 5  # "...: 4, 8, 2, 9, 1, 3."
        # Nothing is left in the order: no fourth send, however long it stays undelivered.
        with later(120):
            assert fallbacks_run_due() == 0

        codes = {code_of(whatsapp), code_of(sms)} - {code_of(call)}
        for earlier in codes:
            assert verify(api, session_id, earlier).json()["data"]["status"] == "INVALID"
        assert verify(api, session_id, code_of(call)).json()["data"]["status"] == "APPROVED"
    assert sends(session_id) == [("whatsapp", "undeliverable"), ("sms", "sent"), ("voice", "sent")]
    session = OtpSession.objects.get(public_id=session_id)
    assert session.channel == "voice" and session.resends == 0  # fallbacks are not the client's resends


def test_a_permanent_provider_error_falls_back_at_once(api, workspace, voice_route, django_capture_on_commit_callbacks):
    route_create(name="wa-down", backend="locmem_whatsapp", values={"fail": "permanent"})
    Workspace.objects.filter(pk=workspace.pk).update(channels=["whatsapp", "voice"])
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    with django_capture_on_commit_callbacks() as published:
        assert send_latest(session_id).status == "failed"
    assert published  # the fallback was enqueued once the failure committed
    assert otp_fall_back(session_id=OtpSession.objects.get(public_id=session_id).pk) is True
    assert send_latest(session_id).channel == "voice"
    assert sends(session_id) == [("whatsapp", "failed"), ("voice", "sent")]


def test_a_delivered_send_does_not_fall_back(api, client, ordered, whatsapp_route):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    whatsapp = send_latest(session_id)
    post_receipt(client, whatsapp_route, whatsapp, "delivered")

    with later(31):
        assert fallbacks_run_due() == 0
    assert sends(session_id) == [("whatsapp", "delivered")]
    assert OtpSession.objects.get(public_id=session_id).fallback_at is None  # dropped: nothing to scan again


@pytest.mark.parametrize("ending", ["APPROVED", "CANCELED", "EXPIRED"])
def test_nothing_falls_back_once_the_session_is_no_longer_pending(api, client, ordered, whatsapp_route, ending):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    whatsapp = send_latest(session_id)
    if ending == "APPROVED":
        assert verify(api, session_id, code_of(whatsapp)).json()["data"]["status"] == "APPROVED"
    elif ending == "CANCELED":
        assert cancel(api, session_id).status_code == 200
    # A failure reported after the end changes nothing either.
    post_receipt(client, whatsapp_route, whatsapp, "undeliverable")

    with later(301 if ending == "EXPIRED" else 31):
        assert fallbacks_run_due() == 0
    assert sends(session_id) == [("whatsapp", "undeliverable")]


def test_two_workers_never_fall_back_twice_from_one_send(api, ordered, transactional_db):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    send_latest(session_id)
    pk = OtpSession.objects.get(public_id=session_id).pk

    with later(31):
        made = run_together(4, lambda _: otp_fall_back(session_id=pk))
    assert made.count(True) == 1
    assert [channel for channel, _ in sends(session_id)] == ["whatsapp", "sms"]


def test_a_request_by_a_channel_without_a_route_is_refused_on_channel(api, workspace):
    response = request_otp(api, DEST, channel="voice")

    assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert "channel" in response.json()["errors"]
    assert not OtpSession.objects.exists() and not SmsMessage.objects.exists()
    assert_api_error(request_otp(api, DEST, channel="fax"), status=400, code="VALIDATION_ERROR")


def test_the_request_channel_comes_first_and_the_order_skips_channels_without_routes(api, workspace, voice_route):
    # WhatsApp has no route: the order's first available channel is SMS.
    Workspace.objects.filter(pk=workspace.pk).update(channels=["whatsapp", "sms", "voice"])
    workspace.refresh_from_db()
    assert channels_available(workspace, "GH") == ["sms", "voice"]
    first = request_otp(api, DEST).json()["data"]["sessionId"]
    assert send_latest(first).channel == "sms"

    called = request_otp(api, "+233202007746", channel="voice").json()["data"]["sessionId"]
    call = send_latest(called)
    assert call.channel == "voice" and call.route_name == "calls"
    delivery = api.get(session_url(called)).json()["data"]["delivery"]
    assert delivery["channel"] == "voice" and delivery["route"] == "calls"


def test_routes_serve_only_their_channel(workspace, whatsapp_route, voice_route):
    assert [choice.name for choice in routes_for("GH")] == ["default"]
    assert [choice.name for choice in routes_for("GH", "whatsapp")] == ["wa"]
    assert [choice.name for choice in routes_for("GH", "voice")] == ["calls"]


def test_a_resend_may_name_its_channel(api, workspace, whatsapp_route):
    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=10)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    send_latest(session_id)

    with later(31):
        refused = api.post(f"{session_url(session_id)}/resend", {"channel": "voice"}, format="json")
        assert_api_error(refused, status=400, code="VALIDATION_ERROR")
        assert "channel" in refused.json()["errors"]
        response = api.post(f"{session_url(session_id)}/resend", {"channel": "whatsapp"}, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["data"]["resends"] == 1
        whatsapp = send_latest(session_id)
        assert whatsapp.channel == "whatsapp"
        assert verify(api, session_id, code_of(whatsapp)).json()["data"]["status"] == "APPROVED"
    assert sends(session_id) == [("sms", "sent"), ("whatsapp", "sent")]


def test_a_resend_without_channel_keeps_the_sessions_channel(api, ordered):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    send_latest(session_id)
    with later(31):
        assert resend(api, session_id).status_code == 200
    assert [channel for channel, _ in sends(session_id)] == ["whatsapp", "whatsapp"]


def test_units_are_priced_per_channel(api, workspace, whatsapp_route, voice_route):
    Workspace.objects.filter(pk=workspace.pk).update(
        units_per_sms_segment=2, units_per_whatsapp_message=3, units_per_call=5, destination_limit=10
    )
    units = {}
    for number, channel in [("+233202007745", "sms"), ("+233202007746", "whatsapp"), ("+233202007747", "voice")]:
        session_id = request_otp(api, number, channel=channel).json()["data"]["sessionId"]
        message = send_latest(session_id)
        units[channel] = (message.segments, message.units)
        assert api.get(session_url(session_id)).json()["data"]["delivery"]["units"] == message.units
    assert units == {"sms": (1, 2), "whatsapp": (1, 3), "voice": (1, 5)}


def test_a_prepaid_workspace_pays_the_channels_price_for_a_fallback(api, workspace, whatsapp_route, voice_route):
    Workspace.objects.filter(pk=workspace.pk).update(
        is_prepaid=True, balance_units=100, channels=["whatsapp", "voice"], units_per_call=7
    )
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    send_latest(session_id)
    with later(31):
        assert fallbacks_run_due() == 1
    debits = list(
        LedgerEntry.objects.filter(workspace=workspace, delta_units__lt=0).values_list("delta_units", flat=True)
    )
    assert sorted(debits) == [-7, -1]
    workspace.refresh_from_db()
    assert workspace.balance_units == 92


def test_a_fallback_counts_towards_the_destination_limit(api, workspace, whatsapp_route):
    # One send left in the window: the first send uses it, the fallback is refused and dropped.
    Workspace.objects.filter(pk=workspace.pk).update(channels=["whatsapp", "sms"], destination_limit=1)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    send_latest(session_id)
    with later(31):
        assert fallbacks_run_due() == 0
    assert [channel for channel, _ in sends(session_id)] == ["whatsapp"]
    assert OtpSession.objects.get(public_id=session_id).fallback_at is None


def test_an_sms_only_workspace_has_nothing_to_fall_back_to(api, workspace):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    assert OtpSession.objects.get(public_id=session_id).fallback_at is None
    assert SmsMessage.objects.get().channel == "sms"


def test_sent_and_delivered_events_carry_the_channel(api, client, ordered, whatsapp_route, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    webhook_endpoint_create(workspace=ordered, url="http://hooks.internal/otp", events=["otp.sent", "otp.delivered"])
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    whatsapp = send_latest(session_id)
    post_receipt(client, whatsapp_route, whatsapp, "delivered")

    for event_type in ("otp.sent", "otp.delivered"):
        (body,) = WebhookDelivery.objects.filter(event_type=event_type).values_list("body", flat=True)
        assert '"channel":"whatsapp"' in body.replace(" ", "")
