"""POST /v1/messaging/otp/{sessionId}/resend (API.md section 8), over HTTP, on both request paths."""

from collections import Counter

import pytest

from otp.apis import MESSAGE_RESENT
from otp.delivery import sms_deliver
from otp.models import DailySmsCount, OtpSession, SmsMessage
from otp.services import otp_request
from otp.tests.helpers import (
    cancel,
    deliver_and_read_code,
    later,
    new_session,
    request_otp,
    resend,
    session_url,
    verify,
    wrong_code,
)
from senders.gateways import locmem
from senders.tests.factories import SenderNameFactory
from workspaces.models import LedgerEntry, Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client, assert_api_error, run_together

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]


@pytest.fixture
def roomy(workspace) -> Workspace:
    """The workspace with room for every resend: by default 3 SMS per 600 s to one number, which a session
    and its 3 resends (within 210 s) would pass."""
    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=10)
    return workspace


def test_a_resend_sends_a_fresh_code_and_the_old_one_stops_working(api, roomy):
    session_id = new_session(api)
    old_code = deliver_and_read_code(session_id)
    assert verify(api, session_id, wrong_code(old_code)).json()["data"]["attemptsLeft"] == 4

    with later(31):
        response = resend(api, session_id)
        assert response.status_code == 200, response.json()
        body = response.json()
        assert body["success"] is True and body["message"] == MESSAGE_RESENT
        assert body["data"] == {
            "sessionId": session_id,
            "expiresInSeconds": 300,
            "attemptsLeft": 4,
            "reused": False,
            "resendAvailableInSeconds": 60,
            "resends": 1,
        }
        new_code = deliver_and_read_code(session_id)

        # The old code is a wrong code now (it uses an attempt); the new one approves.
        if new_code != old_code:
            stale = verify(api, session_id, old_code)
            assert_api_error(
                stale,
                status=400,
                code="INVALID",
                data={"sessionId": session_id, "status": "INVALID", "verified": False, "attemptsLeft": 3},
            )
        assert verify(api, session_id, new_code).json()["data"]["status"] == "APPROVED"

    session = OtpSession.objects.get(public_id=session_id)
    assert session.resends == 1 and session.status == "APPROVED"
    assert list(SmsMessage.objects.filter(session=session).order_by("id").values_list("status", flat=True)) == [
        "sent",
        "sent",
    ]


def test_the_validity_starts_again_and_the_session_view_shows_the_latest_send(api, roomy):
    session_id = new_session(api)
    deliver_and_read_code(session_id)

    with later(200):
        assert resend(api, session_id).status_code == 200
    with later(400):  # past the first validity, within the second
        data = api.get(session_url(session_id)).json()["data"]
    assert data["status"] == "PENDING" and data["expiresInSeconds"] == 100
    assert data["resends"] == 1 and data["resendAvailableInSeconds"] == 0
    assert data["delivery"]["status"] == "queued" and data["delivery"]["attempts"] == 0


def test_the_cooldown_doubles_and_there_are_three_resends_at_most(api, roomy):
    session_id = new_session(api)
    assert api.get(session_url(session_id)).json()["data"]["resendAvailableInSeconds"] == 30
    elapsed = 0
    for resends, (cooldown, next_cooldown) in enumerate([(30, 60), (60, 120), (120, None)], start=1):
        with later(elapsed + cooldown - 1):
            too_soon = resend(api, session_id)
            assert_api_error(too_soon, status=429, code="RESEND_TOO_SOON")
            assert too_soon["Retry-After"] == "1"
        elapsed += cooldown
        with later(elapsed):
            data = resend(api, session_id).json()["data"]
            assert data["resends"] == resends and data["resendAvailableInSeconds"] == next_cooldown
    with later(elapsed + 200):
        assert_api_error(resend(api, session_id), status=409, code="RESEND_LIMIT_REACHED")
        view = api.get(session_url(session_id)).json()["data"]
    assert view["resends"] == 3 and view["resendAvailableInSeconds"] is None
    assert SmsMessage.objects.filter(session__public_id=session_id).count() == 4


def test_too_soon_says_when_in_retry_after(api):
    session_id = new_session(api)
    with later(12):
        response = resend(api, session_id)
    body = assert_api_error(response, status=429, code="RESEND_TOO_SOON")
    assert response["Retry-After"] == "18" and body["message"]
    assert SmsMessage.objects.filter(session__public_id=session_id).count() == 1


def test_only_a_pending_session_can_be_resent(api):
    approved = new_session(api)
    verify(api, approved, deliver_and_read_code(approved))
    canceled = new_session(api, "+233244000101")
    cancel(api, canceled)

    with later(31):
        for session_id, status in [(approved, "APPROVED"), (canceled, "CANCELED")]:
            assert_api_error(resend(api, session_id), status=409, code="SESSION_NOT_PENDING")
            assert OtpSession.objects.get(public_id=session_id).status == status


def test_an_expired_session_is_gone(api):
    session_id = new_session(api)
    with later(300):
        assert_api_error(resend(api, session_id), status=410, code="EXPIRED")
    assert SmsMessage.objects.filter(session__public_id=session_id).count() == 1


def test_another_workspaces_session_is_not_found(api):
    session_id = new_session(api)
    other = WorkspaceFactory(name="Other", slug="other")
    with later(31):
        assert_api_error(resend(api_client(issue_key(other)[1]), session_id), status=404, code="NOT_FOUND")
        assert_api_error(resend(api, "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01"), status=404, code="NOT_FOUND")
    assert OtpSession.objects.get(public_id=session_id).resends == 0


def test_an_sms_still_waiting_is_never_sent_with_its_dead_code(api, roomy):
    session_id = new_session(api)  # its SMS not sent yet (a broker outage, say)
    first = SmsMessage.objects.get(session__public_id=session_id)

    with later(31):
        assert resend(api, session_id).status_code == 200
        first.refresh_from_db()
        assert first.status == "expired" and first.encrypted_text is None
        assert sms_deliver(message_id=first.pk) == "expired"
        code = deliver_and_read_code(session_id)
    assert [sms.reference for sms in locmem.outbox] != [str(first.public_id)]
    assert len(locmem.outbox) == 1 and code in locmem.outbox[0].text


def test_a_resend_counts_towards_the_destination_window(api, workspace):
    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=2)
    session_id = new_session(api)
    with later(31):
        assert resend(api, session_id).status_code == 200
        # The window holds 2 SMS now: the session's first and its resend.
        refused = request_otp(api, DEST, purpose="PASSWORD_RESET")
        assert_api_error(refused, status=429, code="DESTINATION_RATE_LIMITED")
    with later(31 + 60):
        assert_api_error(resend(api, session_id), status=429, code="DESTINATION_RATE_LIMITED")
    assert OtpSession.objects.get(public_id=session_id).resends == 1


def test_a_resend_counts_towards_the_daily_cap(api, roomy):
    Workspace.objects.filter(pk=roomy.pk).update(daily_sms_cap=2)
    session_id = new_session(api)
    with later(31):
        assert resend(api, session_id).status_code == 200
    with later(91):
        assert_api_error(resend(api, session_id), status=429, code="WORKSPACE_QUOTA_EXCEEDED")
    assert DailySmsCount.objects.get(workspace=roomy).count == 2


def test_a_prepaid_workspace_pays_for_a_resend_or_nothing_changes(api, roomy):
    Workspace.objects.filter(pk=roomy.pk).update(is_prepaid=True, balance_units=1)
    session_id = new_session(api)
    code = deliver_and_read_code(session_id)
    before = OtpSession.objects.values("code_digest", "expires_at", "resends").get(public_id=session_id)

    with later(31):
        assert_api_error(resend(api, session_id), status=402, code="INSUFFICIENT_BALANCE")
        assert OtpSession.objects.values("code_digest", "expires_at", "resends").get(public_id=session_id) == before
        assert verify(api, session_id, code).json()["data"]["status"] == "APPROVED"  # the first code still works
    assert SmsMessage.objects.filter(session__public_id=session_id).count() == 1
    assert LedgerEntry.objects.filter(workspace=roomy).count() == 1


def test_a_prepaid_resend_is_debited_and_the_superseded_sms_refunded(api, roomy):
    Workspace.objects.filter(pk=roomy.pk).update(is_prepaid=True, balance_units=5)
    session_id = new_session(api)  # not delivered yet: the resend supersedes it

    with later(31):
        assert resend(api, session_id).status_code == 200
    roomy.refresh_from_db()
    assert roomy.balance_units == 4  # 5 - 1 - 1 + 1 refunded
    reasons = Counter(LedgerEntry.objects.filter(workspace=roomy).values_list("reason", flat=True))
    assert reasons[LedgerEntry.Reason.REFUND] == 1


def test_the_idempotency_key_replays_a_resend(api, roomy):
    session_id = new_session(api)
    with later(31):
        first = resend(api, session_id, HTTP_IDEMPOTENCY_KEY="resend-1")
        again = resend(api, session_id, HTTP_IDEMPOTENCY_KEY="resend-1")
        assert first.status_code == again.status_code == 200
        assert again.json()["data"] == first.json()["data"] and again["Idempotent-Replayed"] == "true"
        other = new_session(api, "+233244000101")
        assert_api_error(resend(api, other, HTTP_IDEMPOTENCY_KEY="resend-1"), status=409, code="IDEMPOTENCY_KEY_REUSED")
    assert OtpSession.objects.get(public_id=session_id).resends == 1
    assert SmsMessage.objects.filter(session__public_id=session_id).count() == 2


def test_a_reused_answer_tells_when_a_resend_is_possible(api):
    session_id = new_session(api)
    with later(20):
        data = request_otp(api, DEST).json()["data"]
    assert data["reused"] is True and data["sessionId"] == session_id and data["resendAvailableInSeconds"] == 10


def test_a_resend_keeps_the_text_and_its_autofill_lines(api, roomy):
    session_id = new_session(api, messageTemplate="Code <OTP> for Acme", webOtpDomain="acme.example")
    first = deliver_and_read_code(session_id)
    with later(31):
        resend(api, session_id)
        second = deliver_and_read_code(session_id)
    texts = [sms.text for sms in locmem.outbox]
    assert texts == [f"Code {code} for Acme\n@acme.example #{code}" for code in (first, second)]


def _race_setup():
    workspace = WorkspaceFactory(name="Race", slug="race", destination_limit=1000)
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    return issue_key(workspace, tps=1000)[1]


@pytest.mark.django_db(transaction=True)
def test_two_resends_racing_send_one_sms():
    raw_key = _race_setup()
    for round_ in range(8):
        session_id = new_session(api_client(raw_key), f"+2332440000{round_:02d}")
        with later(31):
            responses = run_together(2, lambda i, session_id=session_id: resend(api_client(raw_key), session_id))
        assert sorted(r.status_code for r in responses) == [200, 429], [r.json() for r in responses]
        assert OtpSession.objects.get(public_id=session_id).resends == 1
        assert SmsMessage.objects.filter(session__public_id=session_id).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_resend_racing_a_verify_ends_in_one_consistent_state():
    """Either the verify of the delivered code comes first (APPROVED, the resend is 409) or the resend does
    (the code is dead: INVALID with one attempt used, and a new SMS is queued)."""
    raw_key = _race_setup()
    outcomes = Counter()
    for round_ in range(10):
        session_id = new_session(api_client(raw_key), f"+2332440001{round_:02d}")
        code = deliver_and_read_code(session_id)
        with later(31):

            def resend_or_verify(i: int, session_id: str = session_id, code: str = code):
                client = api_client(raw_key)
                return resend(client, session_id) if i == 0 else verify(client, session_id, code)

            resent, verified = run_together(2, resend_or_verify)
        final = OtpSession.objects.get(public_id=session_id)
        sms_count = SmsMessage.objects.filter(session=final).count()
        state = (resent.status_code, verified.json()["data"]["status"], final.status, final.resends, sms_count)
        assert state in {(409, "APPROVED", "APPROVED", 0, 1), (200, "INVALID", "PENDING", 1, 2)}, state
        assert final.attempts_used == (1 if final.resends else 0)
        outcomes[final.status] += 1
    assert sum(outcomes.values()) == 10


@pytest.mark.django_db(transaction=True)
def test_a_resend_racing_a_cancel_ends_in_one_consistent_state():
    raw_key = _race_setup()
    for round_ in range(8):
        session_id = new_session(api_client(raw_key), f"+2332440002{round_:02d}")
        with later(31):

            def resend_or_cancel(i: int, session_id: str = session_id):
                client = api_client(raw_key)
                return resend(client, session_id) if i == 0 else cancel(client, session_id)

            resent, canceled = run_together(2, resend_or_cancel)
        final = OtpSession.objects.get(public_id=session_id)
        assert canceled.status_code == 200 and final.status == "CANCELED"
        assert (resent.status_code, final.resends) in {(200, 1), (409, 0)}
        # Whatever order: no SMS of a canceled session goes out.
        for message in SmsMessage.objects.filter(session=final):
            assert sms_deliver(message_id=message.pk) == "expired"


def test_a_reused_request_reports_the_sessions_resends_on_both_paths(api, roomy):
    session_id = new_session(api)
    with later(31):
        assert resend(api, session_id).status_code == 200
        roomy.refresh_from_db()
        result = otp_request(workspace=roomy, dest=DEST, src="ZECKTA", purpose="LOGIN")
    assert (result.reused, str(result.session_id), result.resends) == (True, session_id, 1)
    assert OtpSession.objects.get(public_id=session_id).resends == 1
