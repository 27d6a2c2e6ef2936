import uuid

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from otp.apis import MESSAGE_VERIFIED, VERIFY_OUTCOMES
from otp.models import OtpSession, VerifyOutcome
from otp.tests.helpers import VERIFY_URL, deliver_and_read_code, request_otp, verify, wrong_code
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client

# Each test runs against both versions of the request and verify rules (otp_path in conftest).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]


@pytest.fixture
def issued(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    return session_id, deliver_and_read_code(session_id)


def assert_outcome(response, *, http: int, status: str, attempts_left: int, session_id: str):
    body = response.json()
    assert response.status_code == http, body
    assert body["data"] == {
        "sessionId": session_id,
        "status": status,
        "verified": status == "APPROVED",
        "attemptsLeft": attempts_left,
    }
    assert body["success"] is (status == "APPROVED")
    if status != "APPROVED":
        assert body["code"] == status
    assert body["requestId"] == response["X-Request-ID"]


def test_the_right_code_approves_the_session(api, issued):
    session_id, code = issued
    response = verify(api, session_id, code)

    assert_outcome(response, http=200, status="APPROVED", attempts_left=5, session_id=session_id)
    assert response.json()["message"] == MESSAGE_VERIFIED
    session = OtpSession.objects.get(public_id=session_id)
    assert session.status == "APPROVED" and session.verified_at is not None


def test_wrong_codes_use_their_attempts_even_when_each_request_is_one_transaction(api, issued, monkeypatch):
    """With ATOMIC_REQUESTS, an exception raised after a wrong code was counted would roll the count back
    with the request's transaction: unlimited guesses. A failed verify is therefore an answer, not an error."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    session_id, code = issued

    for attempts_left in (4, 3, 2, 1):
        response = verify(api, session_id, wrong_code(code))
        assert_outcome(response, http=400, status="INVALID", attempts_left=attempts_left, session_id=session_id)
    last = verify(api, session_id, wrong_code(code))
    right = verify(api, session_id, code)

    assert_outcome(last, http=423, status="MAX_ATTEMPTS_REACHED", attempts_left=0, session_id=session_id)
    assert_outcome(right, http=423, status="MAX_ATTEMPTS_REACHED", attempts_left=0, session_id=session_id)
    session = OtpSession.objects.get(public_id=session_id)
    assert (session.attempts_used, session.status) == (5, "MAX_ATTEMPTS_REACHED")


def test_a_wrong_code_uses_one_attempt(api, issued):
    session_id, code = issued
    response = verify(api, session_id, wrong_code(code))

    assert_outcome(response, http=400, status="INVALID", attempts_left=4, session_id=session_id)
    assert OtpSession.objects.get(public_id=session_id).attempts_used == 1


def test_the_last_wrong_code_locks_the_session_even_against_the_right_code(api, issued):
    session_id, code = issued
    for left in (4, 3, 2, 1):
        assert_outcome(
            verify(api, session_id, wrong_code(code)),
            http=400,
            status="INVALID",
            attempts_left=left,
            session_id=session_id,
        )
    assert_outcome(
        verify(api, session_id, wrong_code(code)),
        http=423,
        status="MAX_ATTEMPTS_REACHED",
        attempts_left=0,
        session_id=session_id,
    )
    assert_outcome(
        verify(api, session_id, code), http=423, status="MAX_ATTEMPTS_REACHED", attempts_left=0, session_id=session_id
    )
    assert OtpSession.objects.get(public_id=session_id).attempts_used == 5


def test_a_used_session_answers_already_used(api, issued):
    session_id, code = issued
    verify(api, session_id, code)
    assert_outcome(
        verify(api, session_id, code), http=409, status="ALREADY_USED", attempts_left=5, session_id=session_id
    )


def test_the_right_code_after_expiry_is_rejected_without_using_an_attempt(api, issued):
    session_id, code = issued
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=301)):
        response = verify(api, session_id, code)
    assert_outcome(response, http=410, status="EXPIRED", attempts_left=5, session_id=session_id)
    session = OtpSession.objects.get(public_id=session_id)
    assert session.status == "EXPIRED" and session.attempts_used == 0


def test_the_right_code_just_before_expiry_is_accepted(api, issued):
    session_id, code = issued
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=298)):
        assert verify(api, session_id, code).status_code == 200


def test_a_code_only_works_for_its_own_session(api, monkeypatch):
    codes = iter(["111111", "222222"])
    monkeypatch.setattr("otp.services.generate_code", lambda length: next(codes))
    first_id = request_otp(api, DEST).json()["data"]["sessionId"]
    second_id = request_otp(api, "+233244123456").json()["data"]["sessionId"]

    response = verify(api, second_id, "111111")  # the first session's code

    assert_outcome(response, http=400, status="INVALID", attempts_left=4, session_id=second_id)
    assert OtpSession.objects.get(public_id=first_id).attempts_used == 0


def test_a_digest_copied_to_another_session_does_not_carry_its_code(api, monkeypatch):
    """The HMAC covers the session id: a code's digest is worthless on any other session."""
    codes = iter(["111111", "222222"])
    monkeypatch.setattr("otp.services.generate_code", lambda length: next(codes))
    first_id = request_otp(api, DEST).json()["data"]["sessionId"]
    second_id = request_otp(api, "+233244123456").json()["data"]["sessionId"]
    first_digest = OtpSession.objects.get(public_id=first_id).code_digest
    OtpSession.objects.filter(public_id=second_id).update(code_digest=first_digest)

    response = verify(api, second_id, "111111")

    assert_outcome(response, http=400, status="INVALID", attempts_left=4, session_id=second_id)


def test_an_unknown_session_is_not_found(api):
    response = verify(api, str(uuid.uuid4()), "123456")
    body = response.json()
    assert response.status_code == 404 and body["code"] == "NOT_FOUND" and body["success"] is False


def test_another_workspaces_session_answers_exactly_like_a_missing_one(api, issued):
    session_id, code = issued
    _, other_key = issue_key(WorkspaceFactory())
    other = api_client(other_key)

    missing_id = str(uuid.uuid4())
    foreign = other.post(VERIFY_URL, {"sessionId": session_id, "code": code}, format="json")
    missing = other.post(VERIFY_URL, {"sessionId": missing_id, "code": code}, format="json")

    assert foreign.status_code == missing.status_code == 404
    # Alike but for the id each echoes back (API.md section 3: NOT_FOUND's data names the id as sent).
    assert (foreign.json()["data"]["sessionId"], missing.json()["data"]["sessionId"]) == (session_id, missing_id)

    def strip(response):
        body = {k: v for k, v in response.json().items() if k != "requestId"}
        return body | {"data": {k: v for k, v in response.json()["data"].items() if k != "sessionId"}}

    assert strip(foreign) == strip(missing)
    assert OtpSession.objects.get(public_id=session_id).status == "PENDING"


@pytest.mark.parametrize(
    "code",
    [
        "",
        "123",
        "12",
        "12345678901",
        "123456\n",
        " 123456",
        "١٢٣٤٥٦",
        "12345a",
        "12.456",
        "+12345",
        None,
        123456,
        ["123456"],
    ],
)
def test_a_malformed_code_is_a_validation_error_and_uses_no_attempt(api, issued, code):
    session_id, _ = issued
    response = api.post(VERIFY_URL, {"sessionId": session_id, "code": code}, format="json")
    body = response.json()
    assert response.status_code == 400 and body["code"] == "VALIDATION_ERROR" and "code" in body["errors"]
    assert OtpSession.objects.get(public_id=session_id).attempts_used == 0


@pytest.mark.parametrize("session_id", ["", "not-a-uuid", "1234", 42, None, {"id": 1}])
def test_a_session_id_that_is_not_a_uuid_string_is_a_validation_error(api, session_id):
    response = api.post(VERIFY_URL, {"sessionId": session_id, "code": "123456"}, format="json")
    body = response.json()
    assert response.status_code == 400 and body["code"] == "VALIDATION_ERROR" and "sessionId" in body["errors"]


def test_verify_requires_both_fields(api):
    response = api.post(VERIFY_URL, {}, format="json")
    assert response.status_code == 400 and set(response.json()["errors"]) == {"sessionId", "code"}


def test_each_outcome_has_the_contracts_status_and_message():
    """API.md section 3's table, pinned once: the other tests import MESSAGE_VERIFIED."""
    assert {outcome.value: answer for outcome, answer in VERIFY_OUTCOMES.items()} == {
        "APPROVED": (200, "OTP verified successfully"),
        "INVALID": (400, "Invalid OTP code."),
        "CANCELED": (410, "OTP has been canceled."),
        "EXPIRED": (410, "OTP has expired."),
        "MAX_ATTEMPTS_REACHED": (423, "Maximum verification attempts reached."),
        "ALREADY_USED": (409, "OTP has already been used."),
        "NOT_FOUND": (404, "OTP session not found."),
    }
    assert MESSAGE_VERIFIED == VERIFY_OUTCOMES[VerifyOutcome.APPROVED][1]
