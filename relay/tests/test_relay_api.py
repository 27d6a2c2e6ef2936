"""The relay (API.md section 14): POST /v1/messaging/sms and GET /v1/messaging/sms/{messageId}. A relayed
SMS takes the OTP SMS's outbox, routes, failover, receipts, limits and units, and has no session."""

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from fraud.models import FraudBlock, number_range
from fraud.services import fraud_block_record
from otp.crypto import decrypt_inbox_text
from otp.delivery import SmsRetryLater, sms_deliver, sms_requeue_stale
from otp.expiry import otp_sessions_purge
from otp.models import DailySmsCount, SmsAttempt, SmsMessage, TestInboxMessage
from otp.tests.helpers import later, request_otp
from senders.gateways import locmem
from senders.routes import route_create
from senders.tests.factories import SenderNameFactory
from senders.tests.fake_gateway import Answer
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create
from workspaces.models import LedgerEntry
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client, assert_api_error

pytestmark = pytest.mark.django_db

URL = "/v1/messaging/sms"
TEXT = "Your Acme code is 482913. It expires in 10 minutes."
OTHER_DEST = "+233202007746"


def message_url(message_id: str) -> str:
    return f"{URL}/{message_id}"


def relay(api, dest: str = DEST, *, text: str = TEXT, src: str = "ZECKTA", **extra):
    return api.post(URL, {"dest": dest, "src": src, "text": text, **extra}, format="json", **extra.pop("headers", {}))


@pytest.fixture
def relay_on(workspace):
    workspace.relay_enabled = True
    workspace.save(update_fields=["relay_enabled"])
    return workspace


@pytest.fixture
def api_of_test_key(relay_on, sender):
    _, raw_key = issue_key(relay_on, name="tests", test=True)
    return api_client(raw_key)


def deliver(message: SmsMessage) -> str:
    """The send task, following failovers as its retries would."""
    for _ in range(10):
        try:
            return sms_deliver(message_id=message.pk)
        except SmsRetryLater as retry:
            if retry.countdown:
                raise
    raise AssertionError("still retrying after 10 calls")


# --- the door --------------------------------------------------------------------------------------


def test_a_relayed_sms_is_queued_without_a_session_and_sent_as_written(
    api, relay_on, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as published:
        response = relay(api, purpose="LOGIN")

    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True and body["message"] == "SMS queued"
    data = body["data"]
    assert set(data) == {"messageId", "segments", "units", "status"}
    assert (data["segments"], data["units"], data["status"]) == (1, 1, "queued")
    message = SmsMessage.objects.get()
    assert str(message.public_id) == data["messageId"]
    assert (message.session_id, message.to, message.src, message.purpose, message.country) == (
        None,
        DEST,
        "ZECKTA",
        "LOGIN",
        "GH",
    )
    assert message.status == "queued" and message.encrypted_text and TEXT.encode() not in bytes(message.encrypted_text)
    assert message.send_before is not None and len(published) == 1  # its task, after commit

    assert deliver(message) == "sent"

    (sent,) = locmem.outbox
    assert (sent.to, sent.src, sent.text, sent.reference) == (DEST, "ZECKTA", TEXT, data["messageId"])
    message.refresh_from_db()
    assert message.status == "sent" and message.encrypted_text is None  # wiped once delivery ended


def test_get_shows_the_delivery_view_with_its_id_and_ends(api, relay_on):
    message_id = relay(api).json()["data"]["messageId"]
    deliver(SmsMessage.objects.get())

    response = api.get(message_url(message_id))

    assert response.status_code == 200
    data = response.json()["data"]
    assert {"messageId", "dest", "src", "status", "segments", "units", "attempts", "updatedAt", "route"} <= set(data)
    assert (data["messageId"], data["dest"], data["src"], data["status"]) == (message_id, DEST, "ZECKTA", "sent")
    assert (data["segments"], data["units"], data["attempts"], data["route"], data["deliveredAt"]) == (
        1,
        1,
        1,
        "default",
        None,
    )


def test_the_relay_is_off_until_staff_enable_it(api, workspace):
    assert workspace.relay_enabled is False

    refused = relay(api)

    assert_api_error(refused, status=403, code="RELAY_DISABLED")
    assert not SmsMessage.objects.exists()
    # Not even a field problem is told before the switch is checked.
    assert_api_error(api.post(URL, {}, format="json"), status=403, code="RELAY_DISABLED")
    assert_api_error(api.get(message_url(str(uuid.uuid4()))), status=403, code="RELAY_DISABLED")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dest": "0202007745"}, "dest"),  # not E.164
        ({"dest": "+8816"}, "dest"),
        ({"src": "NOTMINE"}, "src"),  # not an approved sender name of the workspace
        ({"text": ""}, "text"),
        ({"text": "x" * 613}, "text"),
        ({"text": "Your code is 1234\u202e"}, "text"),  # a bidi override (Cf)
        ({"text": "Your code\u200b is 1234"}, "text"),  # zero-width space (Cf)
        ({"purpose": "SPAM"}, "purpose"),
    ],
)
def test_bad_fields_are_refused_and_nothing_is_queued(api, relay_on, body, field):
    payload = {"dest": DEST, "src": "ZECKTA", "text": TEXT, **body}

    response = api.post(URL, payload, format="json")

    assert assert_api_error(response, status=400, code="VALIDATION_ERROR")["errors"].keys() == {field}
    assert not SmsMessage.objects.exists()


def test_the_longest_text_is_four_segments_and_units(api, relay_on):
    data = relay(api, text="a" * 612).json()["data"]
    unicode = relay(api, OTHER_DEST, text="é" * 10 + "✓").json()["data"]

    assert (data["segments"], data["units"]) == (4, 4)
    assert (unicode["segments"], unicode["units"]) == (1, 1)
    assert SmsMessage.objects.get(to=OTHER_DEST).encoding == "UCS-2"


def test_a_purpose_left_out_or_null_is_none(api, relay_on):
    first = relay(api).json()["data"]["messageId"]
    second = relay(api, OTHER_DEST, purpose=None).json()["data"]["messageId"]

    assert api.get(message_url(first)).json()["data"]["purpose"] is None
    assert SmsMessage.objects.get(public_id=second).purpose == ""


def test_another_workspace_and_an_otp_sms_are_not_found(api, relay_on):
    other = WorkspaceFactory(relay_enabled=True)
    SenderNameFactory(workspace=other, name="OTHER")
    other_api = api_client(issue_key(other, name="k")[1])
    theirs = relay(other_api, src="OTHER").json()["data"]["messageId"]
    session_id = request_otp(api, OTHER_DEST).json()["data"]["sessionId"]
    otp_sms = SmsMessage.objects.get(session__public_id=session_id)

    assert_api_error(api.get(message_url(theirs)), status=404, code="NOT_FOUND")
    assert_api_error(api.get(message_url(str(otp_sms.public_id))), status=404, code="NOT_FOUND")
    assert_api_error(api.get(message_url(str(uuid.uuid4()))), status=404, code="NOT_FOUND")


# --- the limits of an OTP SMS ------------------------------------------------------------------------


def test_relayed_and_otp_sms_share_the_destination_window(api, relay_on):
    relay_on.destination_limit = 2
    relay_on.save(update_fields=["destination_limit"])
    assert relay(api).status_code == 202
    assert request_otp(api, DEST).status_code == 200

    refused = relay(api)
    refused_otp = request_otp(api, DEST, purpose="PASSWORD_RESET")

    assert_api_error(refused, status=429, code="DESTINATION_RATE_LIMITED")
    assert int(refused["Retry-After"]) > 0
    assert_api_error(refused_otp, status=429, code="DESTINATION_RATE_LIMITED")
    assert SmsMessage.objects.count() == 2


def test_the_daily_cap_counts_relayed_sms(api, relay_on):
    relay_on.daily_sms_cap = 1
    relay_on.save(update_fields=["daily_sms_cap"])
    assert relay(api).status_code == 202

    refused = relay(api, OTHER_DEST)

    assert_api_error(refused, status=429, code="WORKSPACE_QUOTA_EXCEEDED")
    assert refused["Retry-After"]
    assert SmsMessage.objects.count() == 1 and DailySmsCount.objects.get().count == 1


def test_the_country_ceiling_counts_relayed_sms(api, relay_on):
    relay_on.country_hourly_limit = 1
    relay_on.save(update_fields=["country_hourly_limit"])
    assert relay(api).status_code == 202

    assert_api_error(relay(api, OTHER_DEST), status=429, code="DESTINATION_RATE_LIMITED")
    assert SmsMessage.objects.count() == 1


def test_the_country_list_applies(api, relay_on):
    relay_on.allowed_countries = "NG"
    relay_on.save(update_fields=["allowed_countries"])

    response = relay(api)

    assert "dest" in assert_api_error(response, status=400, code="VALIDATION_ERROR")["errors"]
    assert not SmsMessage.objects.exists()


def test_a_prepaid_workspace_pays_the_units_and_gets_402_when_it_cannot(api, relay_on):
    relay_on.is_prepaid, relay_on.balance_units = True, 5
    relay_on.save(update_fields=["is_prepaid", "balance_units"])

    paid = relay(api, text="a" * 306)  # 2 segments
    refused = relay(api, OTHER_DEST, text="a" * 612)  # 4 segments, 3 units left

    assert paid.status_code == 202
    assert_api_error(refused, status=402, code="INSUFFICIENT_BALANCE")
    relay_on.refresh_from_db()
    assert relay_on.balance_units == 3
    assert SmsMessage.objects.count() == 1
    debit = LedgerEntry.objects.get(reason=LedgerEntry.Reason.OTP_SMS)
    assert (debit.delta_units, debit.reference) == (-2, paid.json()["data"]["messageId"])


def test_a_relayed_sms_that_fails_for_good_is_refunded(api, relay_on, fake_gateway):
    relay_on.is_prepaid, relay_on.balance_units = True, 5
    relay_on.save(update_fields=["is_prepaid", "balance_units"])
    relay(api)
    fake_gateway.answer(Answer(400, {"error": "bad number"}))

    assert deliver(SmsMessage.objects.get()) == "failed"

    relay_on.refresh_from_db()
    assert relay_on.balance_units == 5
    assert LedgerEntry.objects.filter(reason=LedgerEntry.Reason.REFUND).count() == 1


def test_the_key_rate_applies(api, relay_on, issued_key):
    key = issued_key[0]
    key.tps = 1
    key.save(update_fields=["tps"])

    answers = [relay(api, dest).status_code for dest in (DEST, OTHER_DEST)]

    assert answers == [202, 429]


# --- idempotency and test mode ------------------------------------------------------------------------


def test_the_same_idempotency_key_replays_the_first_answer_and_sends_once(api, relay_on):
    first = relay(api, headers={"HTTP_IDEMPOTENCY_KEY": "k-1"})
    again = relay(api, headers={"HTTP_IDEMPOTENCY_KEY": "k-1"})
    other_body = relay(api, text="Another text", headers={"HTTP_IDEMPOTENCY_KEY": "k-1"})

    assert first.status_code == again.status_code == 202
    assert again.json()["data"] == first.json()["data"] and again["Idempotent-Replayed"] == "true"
    assert_api_error(other_body, status=409, code="IDEMPOTENCY_KEY_REUSED")
    assert SmsMessage.objects.count() == 1


def test_an_idempotency_key_of_an_otp_request_is_another_body(api, relay_on):
    otp_body = {"dest": OTHER_DEST, "src": "ZECKTA", "purpose": "LOGIN"}
    assert api.post("/v1/messaging/otp/request", otp_body, format="json", HTTP_IDEMPOTENCY_KEY="k-2").status_code == 200

    assert_api_error(relay(api, headers={"HTTP_IDEMPOTENCY_KEY": "k-2"}), status=409, code="IDEMPOTENCY_KEY_REUSED")


def test_a_test_key_sends_to_the_test_inbox_and_charges_nothing(
    api_of_test_key, relay_on, django_capture_on_commit_callbacks
):
    relay_on.is_prepaid, relay_on.balance_units = True, 0
    relay_on.save(update_fields=["is_prepaid", "balance_units"])

    with django_capture_on_commit_callbacks(execute=True) as published:
        response = relay(api_of_test_key)

    assert response.status_code == 202 and response.json()["data"]["status"] == "queued"
    assert published == [] and locmem.outbox == []
    message = SmsMessage.objects.get()
    assert (message.is_test, message.status, message.encrypted_text, message.route_name) == (
        True,
        "delivered",
        None,
        "test-inbox",
    )
    stored = TestInboxMessage.objects.get()
    assert stored.session_id is None and decrypt_inbox_text(bytes(stored.encrypted_text)) == TEXT
    inbox = api_of_test_key.get("/v1/messaging/test-inbox", {"dest": DEST}).json()["data"]
    assert [(item["sessionId"], item["text"]) for item in inbox] == [(None, TEXT)]
    view = api_of_test_key.get(message_url(response.json()["data"]["messageId"])).json()["data"]
    assert view["status"] == "delivered"


def test_test_and_live_messages_never_see_each_other(api, api_of_test_key, relay_on):
    live = relay(api).json()["data"]["messageId"]
    test = relay(api_of_test_key).json()["data"]["messageId"]

    assert_api_error(api.get(message_url(test)), status=404, code="NOT_FOUND")
    assert_api_error(api_of_test_key.get(message_url(live)), status=404, code="NOT_FOUND")


# --- the outbox of OTP SMS: routes, failover, receipts, expiry, purge -----------------------------------


def test_a_relayed_sms_fails_over_and_its_receipt_is_applied(api, client, relay_on, fake_gateway):
    route_create(name="first", backend="http", values={"url": f"{fake_gateway.url}/first"}, priority=1)
    second = route_create(
        name="second", backend="http", values={"url": fake_gateway.url, "receipt_token": "t0k3n"}, priority=2
    )
    fake_gateway.answer(Answer(400, {"error": "refused"}), Answer(200, {"id": "provider-1"}))
    message_id = relay(api).json()["data"]["messageId"]

    assert deliver(SmsMessage.objects.get()) == "sent"
    receipt = {"id": "provider-1", "status": "delivered", "timestamp": "2026-12-02T10:00:00Z"}
    url = reverse("sms-receipt", args=[second.public_id]) + "?token=t0k3n"
    assert client.post(url, receipt, content_type="application/json").status_code == 200

    view = api.get(message_url(message_id)).json()["data"]
    assert (view["status"], view["route"], view["attempts"], view["deliveredAt"]) == (
        "delivered",
        "second",
        2,
        "2026-12-02T10:00:00Z",
    )
    assert [attempt.route_name for attempt in SmsAttempt.objects.order_by("pk")] == ["first", "second"]
    assert {request.json["text"] for request in fake_gateway.requests} == {TEXT}


def test_a_relayed_sms_makes_no_webhook_event(api, client, relay_on, fake_gateway, receiver):
    webhook_endpoint_create(
        workspace=relay_on, url=receiver.url, events=["otp.sent", "otp.delivered", "otp.delivery_failed"]
    )
    route = route_create(name="r", backend="http", values={"url": fake_gateway.url, "receipt_token": "t0k3n"})
    fake_gateway.answer(Answer(200, {"id": "provider-2"}))
    relay(api)

    assert deliver(SmsMessage.objects.get()) == "sent"
    url = reverse("sms-receipt", args=[route.public_id]) + "?token=t0k3n"
    receipt = {"id": "provider-2", "status": "delivered", "timestamp": "2026-12-02T10:00:00Z"}
    assert client.post(url, receipt, content_type="application/json").status_code == 200

    assert not WebhookDelivery.objects.exists()
    assert SmsMessage.objects.get().status == "delivered"


def test_a_relayed_sms_not_sent_in_time_expires_unsent_and_is_refunded(api, relay_on, settings):
    relay_on.is_prepaid, relay_on.balance_units = True, 5
    relay_on.save(update_fields=["is_prepaid", "balance_units"])
    relay(api)
    message = SmsMessage.objects.get()

    with later(settings.RELAY_SMS_VALIDITY_SECONDS + 1):
        assert sms_deliver(message_id=message.pk) == "expired"

    assert locmem.outbox == []
    message.refresh_from_db()
    assert message.status == "expired" and message.encrypted_text is None
    relay_on.refresh_from_db()
    assert relay_on.balance_units == 5


def test_the_sweeper_requeues_a_stale_relayed_sms(api, relay_on, settings):
    relay(api)
    message = SmsMessage.objects.get()
    SmsMessage.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=settings.SMS_STALE_AFTER_SECONDS + 1)
    )

    assert sms_requeue_stale() == 1


def test_relayed_sms_are_purged_after_the_session_retention(api, relay_on, settings):
    relay(api)
    request_otp(api, OTHER_DEST)

    # On PostgreSQL a day goes whole once its last hour is past retention (otp.partitions): a day later.
    with later((settings.OTP_SESSION_RETENTION_DAYS + 1) * 86400 + 60):
        otp_sessions_purge()

    assert not SmsMessage.objects.exists()


def test_an_sms_has_a_session_or_a_deadline_never_neither(relay_on):
    now = timezone.now()
    fields = dict(workspace=relay_on, to=DEST, src="ZECKTA", encoding="GSM-7", segments=1, units=1, next_attempt_at=now)
    with pytest.raises(IntegrityError), transaction.atomic():
        SmsMessage.objects.create(**fields, created_at=now, updated_at=now)


# --- the fraud guard (API.md sections 13 and 14) ----------------------------------------------------


def block_range_of(workspace, dest: str, *, mode: str = "enforce") -> None:
    fraud_block_record(
        workspace=workspace,
        scope="range",
        value=number_range(dest),
        rule="range_velocity",
        mode=mode,
        evidence={"sessions": 11, "converted": 0, "numbers": 11},
        now=timezone.now(),
    )


@pytest.mark.django_db(transaction=True)
def test_a_block_of_the_guard_refuses_a_relayed_sms_and_nothing_is_queued(api, relay_on):
    block_range_of(relay_on, DEST)

    response = relay(api)

    assert_api_error(response, status=403, code="DESTINATION_BLOCKED")
    assert response.json()["message"] == "The service cannot send a code to this number now."
    assert not SmsMessage.objects.exists()
    assert relay(api, "+233502007745").status_code == 202  # another range goes out


def test_relayed_sms_count_in_no_rule_of_the_guard(relay_on, sender):
    # Twelve numbers of one range in a second: an OTP request to the eleventh would be refused
    # (range_velocity), but nothing ever tells the service a relayed code was entered.
    api = api_client(issue_key(relay_on, name="busy", tps=100)[1])
    for last in range(12):
        assert relay(api, f"+23320200{last:04d}").status_code == 202
    assert not FraudBlock.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_shadow_block_refuses_no_relayed_sms(api, relay_on):
    relay_on.fraud_guard_mode = "shadow"
    relay_on.save(update_fields=["fraud_guard_mode"])
    block_range_of(relay_on, DEST, mode="shadow")

    assert relay(api).status_code == 202
