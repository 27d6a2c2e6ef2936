"""Races, tested for real: threads with their own PostgreSQL connections released together by a Barrier."""

from collections import Counter

import pytest
from django.db.models import Sum

from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import deliver_and_read_code, request_otp, verify, wrong_code
from senders.tests.factories import SenderNameFactory
from workspaces.models import LedgerEntry, Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client, run_together

# Each test runs against both versions of the request and verify rules (otp_path in conftest).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("otp_path")]


@pytest.fixture
def tenant():
    workspace = WorkspaceFactory(name="Race", slug="race")
    SenderNameFactory(workspace=workspace, name="ZECKTA")
    return workspace, issue_key(workspace, tps=1000)[1]  # the per-key rate is not what these tests race


def test_concurrent_wrong_codes_use_exactly_the_allowed_attempts(tenant):
    workspace, raw_key = tenant
    session_id = request_otp(api_client(raw_key), DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)

    responses = run_together(20, lambda i: verify(api_client(raw_key), session_id, wrong_code(code)))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {400: 4, 423: 16}
    session = OtpSession.objects.get(public_id=session_id)
    assert session.attempts_used == 5 and session.status == "MAX_ATTEMPTS_REACHED"
    assert verify(api_client(raw_key), session_id, code).status_code == 423


def test_concurrent_right_codes_approve_exactly_once(tenant):
    workspace, raw_key = tenant
    session_id = request_otp(api_client(raw_key), DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)

    responses = run_together(10, lambda i: verify(api_client(raw_key), session_id, code))

    assert Counter(r.status_code for r in responses) == {200: 1, 409: 9}
    assert {r.json()["data"]["status"] for r in responses} == {"APPROVED", "ALREADY_USED"}
    assert OtpSession.objects.get(public_id=session_id).status == "APPROVED"


def test_concurrent_identical_requests_give_one_session_and_one_sms(tenant):
    workspace, raw_key = tenant

    responses = run_together(10, lambda i: request_otp(api_client(raw_key), DEST))

    assert all(r.status_code == 200 for r in responses)
    data = [r.json()["data"] for r in responses]
    assert len({d["sessionId"] for d in data}) == 1
    assert Counter(d["reused"] for d in data) == {True: 9, False: 1}
    assert OtpSession.objects.count() == 1 and SmsMessage.objects.count() == 1


def test_concurrent_requests_never_pass_the_destination_limit(tenant):
    workspace, raw_key = tenant
    Workspace.objects.filter(pk=workspace.pk).update(otp_reuse_enabled=False)

    responses = run_together(10, lambda i: request_otp(api_client(raw_key), DEST))

    assert Counter(r.status_code for r in responses) == {200: 3, 429: 7}
    assert SmsMessage.objects.count() == 3
    assert OtpSession.objects.filter(status="PENDING").count() == 1


def test_concurrent_requests_never_overdraw_a_prepaid_balance(tenant):
    workspace, raw_key = tenant
    Workspace.objects.filter(pk=workspace.pk).update(is_prepaid=True, balance_units=3)
    LedgerEntry.objects.create(workspace=workspace, delta_units=3, balance_after=3, reason="opening")
    # Twenty numbers of twenty ranges, as real users' are: twenty of one range would be SMS pumping, refused
    # by the fraud guard before the balance is reached (otp/tests/test_fraud_guard.py).
    destinations = [f"+2332020{i:02d}745" for i in range(20)]

    responses = run_together(20, lambda i: request_otp(api_client(raw_key), destinations[i]))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 3, 402: 17}
    assert {r.json()["code"] for r in responses if r.status_code == 402} == {"INSUFFICIENT_BALANCE"}
    assert SmsMessage.objects.count() == 3
    workspace.refresh_from_db()
    assert workspace.balance_units == 0
    assert LedgerEntry.objects.filter(workspace=workspace).aggregate(total=Sum("delta_units"))["total"] == 0


def test_concurrent_requests_to_different_numbers_never_pass_the_country_ceiling(tenant):
    workspace, raw_key = tenant
    Workspace.objects.filter(pk=workspace.pk).update(country_hourly_limit=3)
    numbers = [f"+2332020077{index:02d}" for index in range(10)]  # ten Ghanaian mobiles

    responses = run_together(10, lambda i: request_otp(api_client(raw_key), numbers[i]))

    assert Counter(r.status_code for r in responses) == {200: 3, 429: 7}
    assert {r.json()["code"] for r in responses if r.status_code == 429} == {"DESTINATION_RATE_LIMITED"}
    assert OtpSession.objects.filter(country="GH").count() == 3 and SmsMessage.objects.count() == 3


def test_concurrent_requests_never_pass_the_workspace_daily_cap(tenant):
    workspace, raw_key = tenant
    Workspace.objects.filter(pk=workspace.pk).update(daily_sms_cap=4)
    numbers = [f"+2332020077{index:02d}" for index in range(10)]

    responses = run_together(10, lambda i: request_otp(api_client(raw_key), numbers[i]))

    assert Counter(r.status_code for r in responses) == {200: 4, 429: 6}
    assert {r.json()["code"] for r in responses if r.status_code == 429} == {"WORKSPACE_QUOTA_EXCEEDED"}
    assert SmsMessage.objects.count() == 4
