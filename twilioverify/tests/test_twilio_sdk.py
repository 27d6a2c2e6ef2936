"""The Twilio Verify door (API.md section 14) as Twilio's own Python SDK sees it: `twilio.rest.Client` with the
workspace's account id and one of its keys, its Verify domain pointed at a live server. Every answer is parsed by
the SDK's VerificationInstance / VerificationCheckInstance, every refusal raised as its TwilioRestException."""

import logging
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from otp.models import OtpSession, SmsMessage, TestInboxMessage
from otp.selectors import inbox_list
from senders.tests.factories import SenderNameFactory
from twilioverify.serializers import sid_of
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST

OTHER_DEST = "+233244000002"


def sdk_client(live_server, workspace: Workspace, raw_key: str, *, account_sid: str | None = None) -> Client:
    client = Client(account_sid or workspace.account_sid, raw_key)
    client.verify.base_url = live_server.url  # plain http: the test server; HTTPS_REQUIRED is off in tests
    return client


@pytest.fixture
def test_key(workspace, sender):
    return issue_key(workspace, name="sdk", test=True)[1]


@pytest.fixture
def service(live_server, workspace, test_key):
    """The workspace's Verify service, as an application written against Twilio reaches it."""
    return sdk_client(live_server, workspace, test_key).verify.v2.services(workspace.service_sid)


def latest_code(workspace: Workspace, dest: str = DEST) -> str:
    messages = inbox_list(workspace=workspace, dest=dest, now=timezone.now())
    return re.search(r"\b\d{6}\b", messages[0].text).group()


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def session_of(sid: str) -> OtpSession:
    return OtpSession.objects.get(public_id=sid[2:])


def test_the_sdk_creates_checks_and_fetches_a_verification(service, workspace, caplog):
    caplog.set_level(logging.DEBUG)
    verification = service.verifications.create(to=DEST, channel="sms")

    assert re.fullmatch(r"VE[0-9a-f]{32}", verification.sid)
    assert (verification.service_sid, verification.account_sid) == (workspace.service_sid, workspace.account_sid)
    assert (verification.to, verification.channel, verification.status, verification.valid) == (
        DEST,
        "sms",
        "pending",
        False,
    )
    assert verification.amount is None and verification.payee is None and verification.lookup == {"carrier": None}
    assert len(verification.send_code_attempts) == 1 and verification.send_code_attempts[0]["channel"] == "sms"
    assert verification.date_created is not None and verification.date_created.tzinfo is not None
    assert verification.url.endswith(f"/v2/Services/{workspace.service_sid}/Verifications/{verification.sid}")
    session = session_of(verification.sid)
    assert (session.dest, session.purpose, session.is_test, session.status) == (DEST, "LOGIN", True, "PENDING")
    assert TestInboxMessage.objects.filter(session=session).count() == 1  # a test key's SMS: the test inbox
    code = latest_code(workspace)

    check = service.verification_checks.create(to=DEST, code=wrong(code))
    assert (check.sid, check.status, check.valid) == (verification.sid, "pending", False)
    session.refresh_from_db()
    assert session.attempts_used == 1

    check = service.verification_checks.create(to=DEST, code=code)
    assert (check.sid, check.status, check.valid, check.to) == (verification.sid, "approved", True, DEST)
    session.refresh_from_db()
    assert session.status == "APPROVED" and session.verified_at is not None

    fetched = service.verifications(verification.sid).fetch()
    assert (fetched.status, fetched.valid) == ("approved", True)
    # No pending verification is left to check: Twilio's 20404, and the session stays approved.
    with pytest.raises(TwilioRestException) as refused:
        service.verification_checks.create(to=DEST, code=code)
    assert (refused.value.status, refused.value.code) == (404, 20404)
    assert code not in caplog.text


def test_a_check_by_verification_sid_and_the_fifth_wrong_code(service, workspace):
    verification = service.verifications.create(to=DEST, channel="sms")
    code = latest_code(workspace)
    for _ in range(4):
        check = service.verification_checks.create(verification_sid=verification.sid, code=wrong(code))
        assert check.status == "pending" and check.valid is False

    with pytest.raises(TwilioRestException) as locked:
        service.verification_checks.create(verification_sid=verification.sid, code=wrong(code))
    assert (locked.value.status, locked.value.code) == (429, 60202)
    session = session_of(verification.sid)
    assert (session.status, session.attempts_used) == ("MAX_ATTEMPTS_REACHED", 5)
    # Even the right code: the attempts are spent.
    with pytest.raises(TwilioRestException) as still:
        service.verification_checks.create(verification_sid=verification.sid, code=code)
    assert still.value.code == 60202
    assert service.verifications(verification.sid).fetch().status == "max_attempts_reached"


def test_a_canceled_verification_checks_as_not_found(service, workspace):
    verification = service.verifications.create(to=DEST, channel="sms")
    code = latest_code(workspace)

    canceled = service.verifications(verification.sid).update(status="canceled")

    assert (canceled.sid, canceled.status, canceled.valid) == (verification.sid, "canceled", False)
    assert session_of(verification.sid).status == "CANCELED"
    with pytest.raises(TwilioRestException) as refused:
        service.verification_checks.create(verification_sid=verification.sid, code=code)
    assert (refused.value.status, refused.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as again:
        service.verifications(verification.sid).update(status="canceled")
    assert again.value.code == 20404
    with pytest.raises(TwilioRestException) as approve:
        service.verifications(verification.sid).update(status="approved")
    assert (approve.value.status, approve.value.code) == (400, 60200)


def test_a_repeated_create_sends_a_fresh_code_and_the_older_one_stops_working(service, workspace):
    first = service.verifications.create(to=DEST, channel="sms")
    old_code = latest_code(workspace)
    # Past the resend cooldown of API.md section 8 (30 s after the first send).
    OtpSession.objects.filter(public_id=first.sid[2:]).update(resend_available_at=timezone.now() - timedelta(seconds=1))

    second = service.verifications.create(to=DEST, channel="sms")

    assert second.sid == first.sid and second.status == "pending"
    assert len(second.send_code_attempts) == 2
    assert session_of(first.sid).resends == 1
    assert TestInboxMessage.objects.filter(session=session_of(first.sid)).count() == 2
    new_code = latest_code(workspace)
    if new_code != old_code:  # one in a million draws the same code again
        check = service.verification_checks.create(to=DEST, code=old_code)
        assert check.status == "pending"
    assert service.verification_checks.create(to=DEST, code=new_code).status == "approved"
    # Within the cooldown, a repeat is Twilio's "too many sends" (60203) and sends nothing.
    third = service.verifications.create(to=OTHER_DEST, channel="sms")
    with pytest.raises(TwilioRestException) as too_soon:
        service.verifications.create(to=OTHER_DEST, channel="sms")
    assert (too_soon.value.status, too_soon.value.code) == (429, 60203)
    assert TestInboxMessage.objects.filter(session=session_of(third.sid)).count() == 1


def test_amount_and_payee_bind_the_code_to_the_transaction(service, workspace):
    verification = service.verifications.create(to=DEST, channel="sms", amount="€39.99", payee="Acme Shop")

    assert (verification.amount, verification.payee) == ("EUR 39.99", "Acme Shop")
    session = session_of(verification.sid)
    assert session.purpose == "TRANSACTION"
    assert session.transaction == {"amount": "39.99", "currency": "EUR", "payee": "Acme Shop"}
    code = latest_code(workspace)
    assert "EUR 39.99" in inbox_list(workspace=workspace, dest=DEST, now=timezone.now())[0].text

    other = service.verification_checks.create(to=DEST, code=code, amount="EUR 40.00", payee="Acme Shop")
    assert (other.status, other.valid) == ("pending", False)  # another amount: a wrong code
    check = service.verification_checks.create(to=DEST, code=code, amount="39.99 EUR", payee="Acme Shop")
    assert (check.status, check.valid, check.amount, check.payee) == ("approved", True, "EUR 39.99", "Acme Shop")

    with pytest.raises(TwilioRestException) as bare:
        service.verifications.create(to=DEST, channel="sms", amount="39.99", payee="Acme Shop")
    assert (bare.value.status, bare.value.code) == (400, 60200) and "Amount" in bare.value.msg


def test_another_workspaces_service_and_verifications_are_not_found(live_server, service, workspace, test_key):
    other = WorkspaceFactory(slug="other")
    SenderNameFactory(workspace=other, name="OTHER")
    other_key = issue_key(other, test=True)[1]
    theirs = sdk_client(live_server, other, other_key).verify.v2.services(other.service_sid)
    their_verification = theirs.verifications.create(to=DEST, channel="sms")
    sessions_before = OtpSession.objects.count()

    ours_at_their_service = sdk_client(live_server, workspace, test_key).verify.v2.services(other.service_sid)
    with pytest.raises(TwilioRestException) as create:
        ours_at_their_service.verifications.create(to=DEST, channel="sms")
    with pytest.raises(TwilioRestException) as fetch:
        service.verifications(their_verification.sid).fetch()
    with pytest.raises(TwilioRestException) as check:
        service.verification_checks.create(verification_sid=their_verification.sid, code="123456")
    with pytest.raises(TwilioRestException) as cancel:
        service.verifications(their_verification.sid).update(status="canceled")

    for refused in (create, fetch, check, cancel):
        assert (refused.value.status, refused.value.code) == (404, 20404)
    assert OtpSession.objects.count() == sessions_before
    assert (
        session_of(their_verification.sid).status == "PENDING" and session_of(their_verification.sid).attempts_used == 0
    )


def test_bad_credentials_are_20003(live_server, workspace, test_key):
    other = WorkspaceFactory(slug="other")
    for account_sid, key in (
        (workspace.account_sid, "zk_test_not-a-key"),
        (other.account_sid, test_key),  # a real key, under another workspace's account id
        (workspace.account_sid, ""),
    ):
        client = sdk_client(live_server, workspace, key, account_sid=account_sid)
        with pytest.raises(TwilioRestException) as refused:
            client.verify.v2.services(workspace.service_sid).verifications.create(to=DEST, channel="sms")
        assert (refused.value.status, refused.value.code) == (401, 20003)
    assert not OtpSession.objects.exists()


def test_a_live_key_queues_a_real_sms_and_the_test_inbox_stays_empty(live_server, workspace, sender):
    live_key = issue_key(workspace, name="live")[1]
    service = sdk_client(live_server, workspace, live_key).verify.v2.services(workspace.service_sid)

    verification = service.verifications.create(to=DEST, channel="sms")

    session = session_of(verification.sid)
    assert session.is_test is False and session.src == "ZECKTA"
    assert SmsMessage.objects.filter(session=session, is_test=False).count() == 1
    assert not TestInboxMessage.objects.exists()
    # A test key does not see the live verification.
    test_service = sdk_client(live_server, workspace, issue_key(workspace, test=True)[1]).verify.v2.services(
        workspace.service_sid
    )
    with pytest.raises(TwilioRestException) as hidden:
        test_service.verifications(verification.sid).fetch()
    assert hidden.value.code == 20404


def test_the_default_sender_name_is_the_src(service, workspace):
    SenderNameFactory(workspace=workspace, name="AAFIRST")
    SenderNameFactory(workspace=workspace, name="CHOSEN", is_default=True)

    verification = service.verifications.create(to=DEST, channel="auto")  # Twilio's pick: SMS, the only one here

    assert session_of(verification.sid).src == "CHOSEN"
    assert verification.channel == "sms"


def test_invalid_parameters_are_60200(service):
    for params in (
        {"to": "0202007745", "channel": "sms"},
        {"to": DEST, "channel": "whatsapp"},
        {"to": DEST, "channel": "sms", "custom_code": "123456"},
    ):
        with pytest.raises(TwilioRestException) as refused:
            service.verifications.create(**params)
        assert (refused.value.status, refused.value.code) == (400, 60200)
    with pytest.raises(TwilioRestException) as bad_code:
        service.verification_checks.create(to=DEST, code="12ab")
    assert (bad_code.value.status, bad_code.value.code) == (400, 60200) and "Code" in bad_code.value.msg
    assert not OtpSession.objects.exists()


def test_too_many_sends_to_one_number_is_60203(service, workspace):
    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=1)
    first = service.verifications.create(to=DEST, channel="sms")
    service.verifications(first.sid).update(status="canceled")

    with pytest.raises(TwilioRestException) as refused:
        service.verifications.create(to=DEST, channel="sms")

    assert (refused.value.status, refused.value.code) == (429, 60203)
    assert OtpSession.objects.count() == 1


def test_the_keys_request_rate_is_20429(live_server, workspace, sender):
    raw_key = issue_key(workspace, test=True, tps=1)[1]
    service = sdk_client(live_server, workspace, raw_key).verify.v2.services(workspace.service_sid)
    unknown = sid_of(OtpSession().public_id)
    codes = []
    for _ in range(3):
        try:
            service.verifications(unknown).fetch()
        except TwilioRestException as exc:
            codes.append(exc.code)
    assert 20404 in codes and 20429 in codes
