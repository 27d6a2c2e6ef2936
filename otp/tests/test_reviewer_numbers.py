"""Reviewer numbers (API.md section 10): a fixed code for app-store reviewers, nothing sent or charged, kept by
staff in the admin with every change audited, and the code never stored or shown in plaintext."""

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse

from otp.crypto import code_matches
from otp.models import OtpSession, ReviewerNumber, SmsMessage, TestInboxMessage, WrongCode
from otp.testmode import reviewer_number_add, reviewer_number_delete, reviewer_number_update
from otp.tests.helpers import deliver_and_read_code, later, request_otp, resend, session_url, verify, wrong_code
from senders.gateways import locmem
from workspaces.models import AuditEvent, LedgerEntry, Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from workspaces.tests.helpers import all_audit_text, events, the_event
from zeckta.errors import ValidationFailed
from zeckta.localcache import local_caches_clear
from zeckta.testing import DEST, api_client, assert_api_error

Action = AuditEvent.Action
FIXED_CODE = "246810"
CHANGELIST = reverse("admin:otp_reviewernumber_changelist")
ADD = reverse("admin:otp_reviewernumber_add")

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(workspace) -> ReviewerNumber:
    return reviewer_number_add(workspace=workspace, dest=DEST, code=FIXED_CODE, note="App Store review", actor="staff")


def approves(api, session_id: str, code: str) -> bool:
    return verify(api, session_id, code).json()["data"]["status"] == "APPROVED"


@pytest.mark.usefixtures("otp_path")
def test_a_reviewer_number_gets_its_fixed_code_and_nothing_is_sent_or_charged(api, issued_key, workspace, reviewer):
    Workspace.objects.filter(pk=workspace.pk).update(is_prepaid=True, balance_units=0)

    response = request_otp(api, DEST)

    assert response.status_code == 200 and response.json()["data"]["reused"] is False
    session_id = response.json()["data"]["sessionId"]
    assert not SmsMessage.objects.exists() and not locmem.outbox
    assert not LedgerEntry.objects.exists() and Workspace.objects.get(pk=workspace.pk).balance_units == 0
    assert api.get(session_url(session_id)).json()["data"]["delivery"] is None
    session = OtpSession.objects.get()
    assert code_matches(session.public_id, FIXED_CODE, session.code_digest)  # only its digest, as always
    used = the_event(Action.REVIEWER_NUMBER_USED)
    assert (used.actor, used.target, used.workspace) == (f"api:{issued_key[0].prefix}", DEST, workspace)
    assert used.detail == {"session": session_id, "mode": "live", "resends": 0}
    assert FIXED_CODE not in all_audit_text()

    assert not approves(api, session_id, wrong_code(FIXED_CODE))
    assert approves(api, session_id, FIXED_CODE)


@pytest.mark.usefixtures("otp_path")
def test_it_works_with_a_test_key_too_and_its_resend_sends_nothing(workspace, sender, reviewer):
    api = api_client(issue_key(workspace, test=True)[1])
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    with later(31):
        assert resend(api, session_id).json()["data"]["resends"] == 1

    assert not SmsMessage.objects.exists() and not TestInboxMessage.objects.exists() and not locmem.outbox
    assert [event.detail["mode"] for event in events(Action.REVIEWER_NUMBER_USED)] == ["test", "test"]
    assert approves(api, session_id, FIXED_CODE)


@pytest.mark.usefixtures("otp_path")
def test_the_guess_budget_still_holds_for_a_reviewer_number(api, workspace, reviewer):
    Workspace.objects.filter(pk=workspace.pk).update(wrong_code_budget=2)
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    for _ in range(2):
        assert verify(api, session_id, wrong_code(FIXED_CODE)).status_code == 400
    assert WrongCode.objects.count() == 2

    refused = assert_api_error(
        request_otp(api, DEST, purpose="PASSWORD_RESET"), status=429, code="DESTINATION_RATE_LIMITED"
    )
    assert "wrong codes" in refused["message"]


@pytest.mark.usefixtures("otp_path")
def test_a_reviewer_numbers_guess_budget_is_one_for_both_modes(api, workspace, reviewer):
    # Its fixed code is the same for either key: a budget per mode would give a guesser twice the guesses.
    Workspace.objects.filter(pk=workspace.pk).update(wrong_code_budget=2)
    test_api = api_client(issue_key(workspace, test=True)[1])
    live_session = request_otp(api, DEST).json()["data"]["sessionId"]
    assert verify(api, live_session, wrong_code(FIXED_CODE)).status_code == 400
    test_session = request_otp(test_api, DEST).json()["data"]["sessionId"]
    assert verify(test_api, test_session, wrong_code(FIXED_CODE)).status_code == 400
    assert sorted(WrongCode.objects.values_list("is_test", flat=True)) == [False, True]

    for client in (api, test_api):
        refused = assert_api_error(
            request_otp(client, DEST, purpose="PASSWORD_RESET"), status=429, code="DESTINATION_RATE_LIMITED"
        )
        assert "wrong codes" in refused["message"]
    with later(31):
        for client, session_id in ((api, live_session), (test_api, test_session)):
            assert_api_error(resend(client, session_id), status=429, code="DESTINATION_RATE_LIMITED")
    assert OtpSession.objects.count() == 2 and OtpSession.objects.filter(resends=0).count() == 2


def test_the_fixed_code_is_stored_encrypted(reviewer):
    raw = bytes(ReviewerNumber.objects.values_list("encrypted_code", flat=True).get())
    assert FIXED_CODE.encode() not in raw


def test_a_disabled_or_deleted_reviewer_number_gets_a_real_sms_at_once(api, reviewer):
    reviewer_number_update(reviewer_number=reviewer, values={"enabled": False}, actor="staff")
    first = request_otp(api, DEST).json()["data"]["sessionId"]
    assert SmsMessage.objects.count() == 1
    assert not approves(api, first, FIXED_CODE)

    reviewer_number_update(reviewer_number=reviewer, values={"enabled": True}, actor="staff")
    second = request_otp(api, DEST, purpose="PASSWORD_RESET").json()["data"]["sessionId"]
    assert SmsMessage.objects.count() == 1 and approves(api, second, FIXED_CODE)

    reviewer_number_delete(reviewer_number=reviewer, actor="staff")
    third = request_otp(api, DEST, purpose="KYC_VERIFICATION").json()["data"]["sessionId"]
    assert approves(api, third, deliver_and_read_code(third))


def test_a_code_that_no_longer_decrypts_makes_it_an_ordinary_number(api, reviewer, caplog):
    ReviewerNumber.objects.filter(pk=reviewer.pk).update(encrypted_code=Fernet(Fernet.generate_key()).encrypt(b"1"))
    local_caches_clear()

    session_id = request_otp(api, DEST).json()["data"]["sessionId"]

    assert approves(api, session_id, deliver_and_read_code(session_id))
    assert "no longer decrypts" in caplog.text


def test_the_service_refuses_bad_numbers_codes_and_duplicates(workspace, reviewer):
    for dest, code in (
        ("0202007745", "123456"),
        ("+233244000002", "12a456"),
        ("+233244000002", "123"),
        (DEST, "123456"),
    ):
        with pytest.raises(ValidationFailed):
            reviewer_number_add(workspace=workspace, dest=dest, code=code)
    assert ReviewerNumber.objects.count() == 1
    assert len(events(Action.REVIEWER_NUMBER_ADDED)) == 1


# --- The admin ------------------------------------------------------------------------------------


def form(workspace, **changes) -> dict:
    return {
        "workspace": workspace.pk,
        "dest": DEST,
        "code": FIXED_CODE,
        "note": "Play review",
        "enabled": "on",
        **changes,
    }


def test_staff_add_change_and_delete_reviewer_numbers_each_audited_and_the_code_is_write_only(
    admin_client, admin_user, api, workspace
):
    staff = admin_user.get_username()
    assert admin_client.get(ADD).status_code == 200
    response = admin_client.post(ADD, form(workspace))
    assert response.status_code == 302, response.context["adminform"].form.errors
    number = ReviewerNumber.objects.get()
    added = the_event(Action.REVIEWER_NUMBER_ADDED)
    assert (added.actor, added.target, number.created_by) == (staff, DEST, staff)

    change_url = reverse("admin:otp_reviewernumber_change", args=[number.pk])
    for page in (admin_client.get(change_url), admin_client.get(CHANGELIST)):
        assert page.status_code == 200 and FIXED_CODE not in page.text and DEST in page.text
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    assert approves(api, session_id, FIXED_CODE)

    # Empty: the code stays. Then a new one replaces it.
    data = form(workspace, code="", note="Play review, round 2")
    data.pop("workspace")
    assert admin_client.post(change_url, data).status_code == 302
    changed = the_event(Action.REVIEWER_NUMBER_CHANGED)
    assert changed.detail == {"changes": {"note": {"old": "Play review", "new": "Play review, round 2"}}}
    assert admin_client.post(change_url, {**data, "code": "13579"}).status_code == 302
    assert events(Action.REVIEWER_NUMBER_CHANGED)[-1].detail == {"changes": {}, "code_changed": True}
    session_id = request_otp(api, DEST, purpose="PASSWORD_RESET").json()["data"]["sessionId"]
    assert approves(api, session_id, "13579")
    assert FIXED_CODE not in all_audit_text() and "13579" not in all_audit_text()

    delete_url = reverse("admin:otp_reviewernumber_delete", args=[number.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not ReviewerNumber.objects.exists()
    assert the_event(Action.REVIEWER_NUMBER_DELETED).actor == staff


def test_the_admin_refuses_a_bad_number_a_bad_code_a_missing_code_and_a_duplicate(admin_client, workspace, reviewer):
    other = WorkspaceFactory()
    for data, field in (
        (form(other, dest="0202007745"), "dest"),
        (form(other, code="12"), "code"),
        (form(other, code=""), "code"),
        (form(workspace), "dest"),
    ):
        response = admin_client.post(ADD, data)
        assert response.status_code == 200 and field in response.context["adminform"].form.errors
    assert ReviewerNumber.objects.count() == 1
    # The same number in another workspace is fine.
    assert admin_client.post(ADD, form(other)).status_code == 302


def test_deleting_from_the_changelist_goes_through_the_service(admin_client, reviewer):
    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [reviewer.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert not ReviewerNumber.objects.exists()
    assert len(events(Action.REVIEWER_NUMBER_DELETED)) == 1
