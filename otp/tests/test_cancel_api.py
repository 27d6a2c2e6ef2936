"""POST /v1/messaging/otp/{sessionId}/cancel (API.md section 8), over HTTP."""

from collections import Counter
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from otp.delivery import sms_deliver
from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify, wrong_code
from senders.gateways import locmem
from senders.tests.factories import SenderNameFactory
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client, assert_api_error, run_together

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]


def cancel(api, session_id: str, body: dict | None = None):
    return api.post(f"{session_url(session_id)}/cancel", {} if body is None else body, format="json")


def new_session(api, dest: str = DEST) -> str:
    return request_otp(api, dest).json()["data"]["sessionId"]


def test_a_pending_session_is_canceled_and_its_code_stops_working(api):
    session_id = new_session(api)
    code = deliver_and_read_code(session_id)
    verify(api, session_id, wrong_code(code))  # one attempt used before the cancel

    response = cancel(api, session_id)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["message"] == "OTP session canceled"
    assert body["data"]["sessionId"] == session_id and body["data"]["status"] == "CANCELED"
    assert body["data"]["attemptsLeft"] == 4
    refused = verify(api, session_id, code)
    assert refused.status_code == 410
    assert refused.json()["code"] == "CANCELED" and refused.json()["message"] == "OTP has been canceled."
    assert refused.json()["data"] == {
        "sessionId": session_id,
        "status": "CANCELED",
        "verified": False,
        "attemptsLeft": 4,
    }  # no attempt used
    assert api.get(session_url(session_id)).json()["data"]["status"] == "CANCELED"


def test_a_canceled_session_is_never_reused(api):
    first = new_session(api)
    cancel(api, first)

    again = request_otp(api, DEST).json()["data"]

    assert again["reused"] is False and again["sessionId"] != first
    assert OtpSession.objects.get(public_id=first).status == "CANCELED"


def test_the_sms_of_a_canceled_session_is_not_sent_if_it_has_not_gone_out(api):
    session_id = new_session(api)
    cancel(api, session_id)

    message = SmsMessage.objects.get(session__public_id=session_id)
    assert sms_deliver(message_id=message.pk) == "expired"
    assert locmem.outbox == []


def test_only_a_pending_session_can_be_canceled(api):
    canceled = new_session(api)
    cancel(api, canceled)
    assert_api_error(cancel(api, canceled), status=409, code="SESSION_NOT_PENDING")

    approved = new_session(api, "+233244123456")
    assert verify(api, approved, deliver_and_read_code(approved)).status_code == 200
    assert_api_error(cancel(api, approved), status=409, code="SESSION_NOT_PENDING")
    assert OtpSession.objects.get(public_id=approved).status == "APPROVED"


def test_an_expired_session_cannot_be_canceled(api):
    session_id = new_session(api)
    with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
        assert_api_error(cancel(api, session_id), status=409, code="SESSION_NOT_PENDING")
        assert api.get(session_url(session_id)).json()["data"]["status"] == "EXPIRED"
    assert OtpSession.objects.get(public_id=session_id).status == "EXPIRED"


def test_another_workspaces_session_is_not_found_and_stays_pending(api):
    session_id = new_session(api)
    other = WorkspaceFactory(name="Other", slug="other")
    SenderNameFactory(workspace=other, name="ZECKTA")
    stranger = api_client(issue_key(other)[1])

    assert_api_error(cancel(stranger, session_id), status=404, code="NOT_FOUND")
    assert_api_error(cancel(api, "00000000-0000-4000-8000-000000000000"), status=404, code="NOT_FOUND")
    assert OtpSession.objects.get(public_id=session_id).status == "PENDING"


def test_cancel_takes_a_json_body_only(api):
    session_id = new_session(api)
    response = api.post(f"{session_url(session_id)}/cancel", "x", content_type="text/plain")
    assert_api_error(response, status=415, code="UNSUPPORTED_MEDIA_TYPE")
    assert api.get(f"{session_url(session_id)}/cancel").status_code == 405
    assert OtpSession.objects.get(public_id=session_id).status == "PENDING"


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_verify_ends_in_one_consistent_state():
    """Released together, again and again: either the right code wins (APPROVED, and the cancel is 409) or
    the cancel does (CANCELED, and the verify is 410). Never both, never a verify that used an attempt."""
    workspace = WorkspaceFactory(name="Race", slug="race")
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    raw_key = issue_key(workspace, tps=1000)[1]
    outcomes = Counter()
    for round_ in range(12):
        # A range per round: twelve new numbers of one range, some never approved, are the fraud guard's.
        session_id = new_session(api_client(raw_key), f"+2332440{round_:02d}000")
        code = deliver_and_read_code(session_id)

        def cancel_or_verify(i: int, session_id: str = session_id, code: str = code):
            client = api_client(raw_key)
            return cancel(client, session_id) if i == 0 else verify(client, session_id, code)

        cancel_response, verify_response = run_together(2, cancel_or_verify)

        final = OtpSession.objects.get(public_id=session_id)
        pair = (cancel_response.status_code, verify_response.status_code, final.status)
        assert pair in {(409, 200, "APPROVED"), (200, 410, "CANCELED")}, pair
        assert final.attempts_used == 0
        outcomes[final.status] += 1
    assert sum(outcomes.values()) == 12
