import uuid

import pytest
import time_machine
from django.utils import timezone

from otp.models import OtpSession
from otp.tests.helpers import VERIFY_URL, deliver_and_read_code, request_otp, verify, wrong_code
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    return session_id, deliver_and_read_code(session_id)


def assert_outcome(response, *, http: int, status: str, attempts_left: int, session_id: str):
    body = response.json()
    assert response.status_code == http, body
    assert body["data"] == {
        "sessionId": session_id, "status": status, "verified": status == "APPROVED", "attemptsLeft": attempts_left,
    }
    assert body["success"] is (status == "APPROVED")
    if status != "APPROVED":
        assert body["code"] == status
    assert body["requestId"] == response["X-Request-ID"]


def test_the_right_code_approves_the_session(api, issued):
    session_id, code = issued
    response = verify(api, session_id, code)

    assert_outcome(response, http=200, status="APPROVED", attempts_left=5, session_id=session_id)
    assert response.json()["message"] == "OTP verified successfully"
    session = OtpSession.objects.get(public_id=session_id)
    assert session.status == "APPROVED" and session.verified_at is not None


def test_a_wrong_code_uses_one_attempt(api, issued):
    session_id, code = issued
    response = verify(api, session_id, wrong_code(code))

    assert_outcome(response, http=400, status="INVALID", attempts_left=4, session_id=session_id)
    assert OtpSession.objects.get(public_id=session_id).attempts_used == 1


def test_the_last_wrong_code_locks_the_session_even_against_the_right_code(api, issued):
    session_id, code = issued
    for left in (4, 3, 2, 1):
        assert_outcome(verify(api, session_id, wrong_code(code)), http=400, status="INVALID", attempts_left=left,
                       session_id=session_id)
    assert_outcome(verify(api, session_id, wrong_code(code)), http=423, status="MAX_ATTEMPTS_REACHED",
                   attempts_left=0, session_id=session_id)
    assert_outcome(verify(api, session_id, code), http=423, status="MAX_ATTEMPTS_REACHED", attempts_left=0,
                   session_id=session_id)
    assert OtpSession.objects.get(public_id=session_id).attempts_used == 5


def test_a_used_session_answers_already_used(api, issued):
    session_id, code = issued
    verify(api, session_id, code)
    assert_outcome(verify(api, session_id, code), http=409, status="ALREADY_USED", attempts_left=5,
                   session_id=session_id)


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


def test_a_code_only_works_for_its_own_session(api, issued):
    session_id, code = issued
    other_id = request_otp(api, "+233244123456").json()["data"]["sessionId"]
    response = verify(api, other_id, code)
    assert response.status_code in (400, 200)
    # Codes are random per session: A's code approving B would be a 1-in-a-million coincidence.
    if response.status_code == 400:
        assert response.json()["data"]["status"] == "INVALID"


def test_an_unknown_session_is_not_found(api):
    response = verify(api, str(uuid.uuid4()), "123456")
    body = response.json()
    assert response.status_code == 404 and body["code"] == "NOT_FOUND" and body["success"] is False


def test_another_workspaces_session_answers_exactly_like_a_missing_one(api, issued):
    session_id, code = issued
    _, other_key = issue_key(WorkspaceFactory())
    other = api_client(other_key)

    foreign = other.post(VERIFY_URL, {"sessionId": session_id, "code": code}, format="json")
    missing = other.post(VERIFY_URL, {"sessionId": str(uuid.uuid4()), "code": code}, format="json")

    assert foreign.status_code == missing.status_code == 404
    strip = lambda r: {k: v for k, v in r.json().items() if k != "requestId"}  # noqa: E731
    assert strip(foreign) == strip(missing)
    assert OtpSession.objects.get(public_id=session_id).status == "PENDING"


@pytest.mark.parametrize(
    "code", ["", "123", "12", "12345678901", "123456\n", " 123456", "١٢٣٤٥٦", "12345a", "12.456", "+12345", None,
             123456, ["123456"]],
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
