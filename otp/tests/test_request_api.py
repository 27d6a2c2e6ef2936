import uuid

import pytest
import time_machine
from django.utils import timezone

from otp.apis import MESSAGE_REUSED, MESSAGE_SENT
from otp.delivery import SMS_QUEUE
from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import REQUEST_URL, deliver_and_read_code, request_otp
from senders.tests.factories import SenderNameFactory
from workspaces.models import LedgerEntry
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client, assert_api_error

# Each test runs against both versions of the request and verify rules (otp_path in conftest).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]


def test_it_creates_a_session_and_queues_one_sms(api, workspace, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = request_otp(api, DEST)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == MESSAGE_SENT
    assert set(body) == {"success", "message", "data", "requestId"}
    assert body["requestId"] == response["X-Request-ID"]
    data = body["data"]
    assert set(data) == {"sessionId", "expiresInSeconds", "attemptsLeft", "reused", "resendAvailableInSeconds"}
    assert data["expiresInSeconds"] == 300 and data["attemptsLeft"] == 5 and data["reused"] is False
    assert data["resendAvailableInSeconds"] == 30
    session = OtpSession.objects.get(public_id=data["sessionId"])
    assert session.workspace == workspace and session.dest == DEST and session.purpose == "LOGIN"
    assert session.status == "PENDING" and session.country == "GH"
    sms = SmsMessage.objects.get(session=session)
    assert sms.status == "queued" and sms.segments == sms.units == 1 and sms.attempts == 0
    assert len(callbacks) == 1  # the send task is published only after commit


def test_it_reuses_the_active_session_for_the_same_purpose(api, sms_outbox):
    first = request_otp(api, DEST).json()["data"]
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=157)):
        response = request_otp(api, DEST)

    body = response.json()
    assert response.status_code == 200
    assert body["message"] == MESSAGE_REUSED
    assert body["data"]["sessionId"] == first["sessionId"]
    assert body["data"]["reused"] is True
    assert 142 <= body["data"]["expiresInSeconds"] <= 143
    assert OtpSession.objects.count() == 1 and SmsMessage.objects.count() == 1


def test_reuse_keeps_expiry_and_spent_attempts(api):
    first = request_otp(api, DEST).json()["data"]
    OtpSession.objects.filter(public_id=first["sessionId"]).update(attempts_used=2)
    before = OtpSession.objects.get(public_id=first["sessionId"]).expires_at

    again = request_otp(api, DEST).json()["data"]

    assert again["attemptsLeft"] == 3
    assert OtpSession.objects.get(public_id=first["sessionId"]).expires_at == before


def test_a_different_purpose_gets_its_own_session(api):
    login = request_otp(api, DEST, purpose="LOGIN").json()["data"]
    reset = request_otp(api, DEST, purpose="PASSWORD_RESET").json()["data"]
    assert login["sessionId"] != reset["sessionId"] and reset["reused"] is False


def test_an_expired_session_is_replaced_by_a_new_one(api):
    first = request_otp(api, DEST).json()["data"]
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=301)):
        second = request_otp(api, DEST).json()["data"]
    assert second["sessionId"] != first["sessionId"] and second["reused"] is False
    assert OtpSession.objects.get(public_id=first["sessionId"]).status == "EXPIRED"


def test_with_reuse_disabled_each_request_sends_a_new_code_and_retires_the_old(api, workspace):
    workspace.otp_reuse_enabled = False
    workspace.save()
    first = request_otp(api, DEST).json()["data"]
    second = request_otp(api, DEST).json()["data"]
    assert second["sessionId"] != first["sessionId"] and second["reused"] is False
    assert OtpSession.objects.get(public_id=first["sessionId"]).status == "EXPIRED"
    assert SmsMessage.objects.count() == 2


def test_workspace_policy_shapes_the_session(api, workspace):
    workspace.otp_validity_seconds, workspace.otp_max_attempts, workspace.otp_code_length = 120, 3, 8
    workspace.save()
    data = request_otp(api, DEST).json()["data"]
    assert data["expiresInSeconds"] == 120 and data["attemptsLeft"] == 3
    assert len(deliver_and_read_code(data["sessionId"], length=8)) == 8


def test_the_default_text_for_the_purpose_is_used(api):
    data = request_otp(api, DEST, purpose="PASSWORD_RESET").json()["data"]
    code = deliver_and_read_code(data["sessionId"])
    from senders.gateways import locmem

    assert locmem.outbox[0].text.startswith(f"Your password reset code is {code}. It expires in 5 minutes.")


def test_a_custom_template_is_rendered_literally(api, sms_outbox):
    template = "Code {code.__class__} {{settings.SECRET_KEY}} %s: <OTP> valid <MINUTES> min"
    data = request_otp(api, DEST, messageTemplate=template).json()["data"]
    code = deliver_and_read_code(data["sessionId"])
    assert sms_outbox[0].text == f"Code {{code.__class__}} {{{{settings.SECRET_KEY}}}} %s: {code} valid 5 min"


def test_the_workspace_default_template_applies_without_a_request_template(api, workspace, sms_outbox):
    workspace.default_message_template = "Acme: <OTP>"
    workspace.save()
    data = request_otp(api, DEST).json()["data"]
    code = deliver_and_read_code(data["sessionId"])
    assert sms_outbox[0].text == f"Acme: {code}"


def test_a_unicode_template_is_billed_in_ucs2_segments(api):
    data = request_otp(api, DEST, messageTemplate="Код: <OTP> " + "ж" * 70).json()["data"]
    sms = SmsMessage.objects.get(session__public_id=data["sessionId"])
    assert sms.encoding == "UCS-2" and sms.segments == sms.units == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"src": "ZECKTA", "purpose": "LOGIN"}, "dest"),
        ({"dest": DEST, "purpose": "LOGIN"}, "src"),
        ({"dest": DEST, "src": "ZECKTA"}, "purpose"),
        ({"dest": "0202007745", "src": "ZECKTA", "purpose": "LOGIN"}, "dest"),
        ({"dest": "+233 20 200 7745", "src": "ZECKTA", "purpose": "LOGIN"}, "dest"),
        ({"dest": "+233-20-200-7745", "src": "ZECKTA", "purpose": "LOGIN"}, "dest"),
        ({"dest": "+23320200774", "src": "ZECKTA", "purpose": "LOGIN"}, "dest"),
        ({"dest": "+999123456789", "src": "ZECKTA", "purpose": "LOGIN"}, "dest"),
        ({"dest": 233202007745, "src": "ZECKTA", "purpose": "LOGIN"}, "dest"),
        ({"dest": DEST, "src": "zeckta", "purpose": "LOGIN"}, "src"),
        ({"dest": DEST, "src": "OTHER", "purpose": "LOGIN"}, "src"),
        ({"dest": DEST, "src": "ZECKTA", "purpose": "login"}, "purpose"),
        ({"dest": DEST, "src": "ZECKTA", "purpose": "SIGNUP"}, "purpose"),
        ({"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "messageTemplate": "no placeholder"}, "messageTemplate"),
        ({"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "messageTemplate": "<OTP> <OTP>"}, "messageTemplate"),
        ({"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "messageTemplate": "<OTP> <NAME>"}, "messageTemplate"),
        (
            {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "messageTemplate": "<OTP>" + "x" * 156},
            "messageTemplate",
        ),
        ({"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "messageTemplate": 42}, "messageTemplate"),
    ],
)
def test_invalid_input_is_a_validation_error_and_writes_nothing(api, payload, field):
    response = api.post(REQUEST_URL, payload, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["code"] == "VALIDATION_ERROR" and body["data"] is None
    assert field in body["errors"] and all(isinstance(m, str) for m in body["errors"][field])
    assert not OtpSession.objects.exists() and not SmsMessage.objects.exists()


def test_a_template_of_exactly_160_characters_is_accepted(api):
    response = request_otp(api, DEST, messageTemplate="<OTP>" + "x" * 155)
    assert response.status_code == 200


def test_a_pending_or_rejected_sender_cannot_send(api, workspace):
    SenderNameFactory(workspace=workspace, name="PENDING1", status="PENDING", approved_at=None)
    SenderNameFactory(workspace=workspace, name="REJECTED1", status="REJECTED", approved_at=None)
    for src in ("PENDING1", "REJECTED1"):
        response = request_otp(api, DEST, src=src)
        assert response.status_code == 400 and "src" in response.json()["errors"]
    assert not OtpSession.objects.exists()


def test_another_workspaces_sender_cannot_be_used(api):
    SenderNameFactory(name="THEIRS")
    response = request_otp(api, DEST, src="THEIRS")
    assert response.status_code == 400 and "src" in response.json()["errors"]


def test_a_country_outside_the_allow_list_is_refused(api, workspace):
    workspace.allowed_countries = "NG,KE"
    workspace.save()
    response = request_otp(api, DEST)
    assert response.status_code == 400 and "dest" in response.json()["errors"]
    workspace.allowed_countries = "GH"
    workspace.save()
    assert request_otp(api, DEST).status_code == 200


def test_the_fourth_new_sms_to_one_destination_in_the_window_is_limited(api, workspace):
    workspace.otp_reuse_enabled = False
    workspace.save()
    for _ in range(3):
        assert request_otp(api, DEST).status_code == 200
    response = request_otp(api, DEST)

    assert_api_error(response, status=429, code="DESTINATION_RATE_LIMITED")
    assert 1 <= int(response["Retry-After"]) <= 600
    assert SmsMessage.objects.count() == 3
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=601)):
        assert request_otp(api, DEST).status_code == 200


def test_reused_answers_do_not_count_towards_the_destination_limit(api):
    for _ in range(6):
        assert request_otp(api, DEST).status_code == 200
    assert SmsMessage.objects.count() == 1


def test_session_ids_are_fresh_time_ordered_uuids(api):
    first = uuid.UUID(request_otp(api, DEST).json()["data"]["sessionId"])
    second = uuid.UUID(request_otp(api, "+233244123456").json()["data"]["sessionId"])
    # Version 7: new ids land at the end of the unique index (cheap inserts into a big table).
    assert first.version == second.version == 7 and first.variant == uuid.RFC_4122
    assert first != second and first.bytes[:6] <= second.bytes[:6]


def test_the_answer_messages_are_the_contracts_words():
    """API.md section 2 says these strings are exact: the other tests import them, this one pins them."""
    assert MESSAGE_SENT == "OTP sent successfully"
    assert MESSAGE_REUSED == "Active OTP already exists. No new SMS sent."


def test_a_full_window_for_one_number_still_lets_another_number_through(api, workspace):
    workspace.otp_reuse_enabled = False
    workspace.save()
    for _ in range(3):
        assert request_otp(api, DEST).status_code == 200

    assert_api_error(request_otp(api, DEST), status=429, code="DESTINATION_RATE_LIMITED")
    assert request_otp(api, "+233244123456").status_code == 200


def test_the_window_counts_per_workspace(api, workspace):
    other = WorkspaceFactory()
    SenderNameFactory(workspace=other, name="ZECKTA")
    other_api = api_client(issue_key(other)[1])
    workspace.otp_reuse_enabled = other.otp_reuse_enabled = False
    workspace.save()
    other.save()
    for _ in range(3):
        assert request_otp(other_api, DEST).status_code == 200

    assert request_otp(api, DEST).status_code == 200  # the other workspace's three sends are not ours


def test_a_full_window_still_answers_the_live_session_with_reused_true(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    OtpSession.objects.filter(public_id=session_id).update(status="EXPIRED")  # two more sends fill the window
    assert request_otp(api, DEST).status_code == 200
    OtpSession.objects.filter(dest=DEST, status="PENDING").update(status="EXPIRED")
    live = request_otp(api, DEST).json()["data"]["sessionId"]

    again = request_otp(api, DEST)

    assert again.status_code == 200
    assert (again.json()["data"]["sessionId"], again.json()["data"]["reused"]) == (live, True)
    assert SmsMessage.objects.count() == 3


def test_a_prepaid_balance_exactly_equal_to_the_units_is_accepted_and_ends_at_zero(api, workspace):
    workspace.is_prepaid, workspace.balance_units = True, 1
    workspace.save()

    response = request_otp(api, DEST)

    assert response.status_code == 200
    workspace.refresh_from_db()
    assert workspace.balance_units == 0
    assert LedgerEntry.objects.get().delta_units == -1


@pytest.mark.django_db(transaction=True)
def test_a_402_leaves_no_session_no_outbox_row_and_no_task_on_the_broker(api, workspace, broker_queue):
    workspace.is_prepaid, workspace.balance_units = True, 0
    workspace.save()

    response = request_otp(api, DEST)

    assert_api_error(response, status=402, code="INSUFFICIENT_BALANCE")
    assert not OtpSession.objects.exists() and not SmsMessage.objects.exists()
    assert not LedgerEntry.objects.exists()
    assert broker_queue.llen(SMS_QUEUE) == 0
