"""The webhook events of a session's own state (API.md section 9): otp.approved, otp.max_attempts_reached,
otp.canceled and otp.expired, recorded once each, in the transaction of the change, on both request paths."""

import json
import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from otp.expiry import otp_sessions_expire
from otp.models import OtpSession
from otp.tests.helpers import cancel, deliver_and_read_code, request_otp, verify, wrong_code
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create
from workspaces.models import Workspace
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST, api_client

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]

ALL_STATE_EVENTS = ["otp.approved", "otp.max_attempts_reached", "otp.canceled", "otp.expired"]


@pytest.fixture
def subscribed(workspace, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    return webhook_endpoint_create(workspace=workspace, url="http://hooks.internal/otp", events=ALL_STATE_EVENTS)


def recorded(event_type: str) -> list[dict]:
    return [
        json.loads(body)
        for body in WebhookDelivery.objects.filter(event_type=event_type).order_by("pk").values_list("body", flat=True)
    ]


def new_session(api) -> tuple[str, str]:
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    return session_id, deliver_and_read_code(session_id)


def test_an_approval_is_reported_once_with_the_session_view(api, subscribed):
    session_id, code = new_session(api)
    assert verify(api, session_id, code).status_code == 200
    assert verify(api, session_id, code).json()["data"]["status"] == "ALREADY_USED"

    [event] = recorded("otp.approved")
    assert event["type"] == "otp.approved" and event["data"]["sessionId"] == session_id
    assert event["data"]["status"] == "APPROVED" and event["data"]["verifiedAt"]
    assert code not in json.dumps(event)
    assert WebhookDelivery.objects.count() == 1  # a wrong code or a read reports nothing


def test_the_last_attempt_is_reported_once_however_often_verify_answers_it(api, workspace, subscribed):
    Workspace.objects.filter(pk=workspace.pk).update(otp_max_attempts=2)
    session_id, code = new_session(api)
    assert verify(api, session_id, wrong_code(code)).json()["data"]["status"] == "INVALID"
    assert not recorded("otp.max_attempts_reached")
    for _ in range(3):
        assert verify(api, session_id, wrong_code(code)).json()["data"]["status"] == "MAX_ATTEMPTS_REACHED"

    [event] = recorded("otp.max_attempts_reached")
    assert event["data"]["status"] == "MAX_ATTEMPTS_REACHED" and event["data"]["attemptsLeft"] == 0


def test_a_cancel_is_reported(api, subscribed):
    session_id, _ = new_session(api)
    assert cancel(api, session_id).status_code == 200
    assert cancel(api, session_id).status_code == 409

    [event] = recorded("otp.canceled")
    assert event["data"]["status"] == "CANCELED"


def test_the_sweeper_expires_pending_sessions_and_reports_the_moment_they_expired(api, subscribed):
    session_id, _ = new_session(api)
    expires_at = OtpSession.objects.get(public_id=session_id).expires_at

    with time_machine.travel(expires_at + timedelta(seconds=20), tick=False):
        assert otp_sessions_expire() == 1
        assert otp_sessions_expire() == 0
        assert verify(api, session_id, "000000").json()["data"]["status"] == "EXPIRED"

    assert OtpSession.objects.get(public_id=session_id).status == "EXPIRED"
    [event] = recorded("otp.expired")
    assert event["data"]["status"] == "EXPIRED"
    assert event["timestamp"] == expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # when it expired, exactly


def test_an_expiry_a_verify_finds_first_is_reported_once(api, subscribed):
    session_id, code = new_session(api)
    with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
        assert verify(api, session_id, code).json()["data"]["status"] == "EXPIRED"
        assert verify(api, session_id, code).json()["data"]["status"] == "EXPIRED"
        assert otp_sessions_expire() == 0
    assert len(recorded("otp.expired")) == 1


def test_a_request_that_replaces_an_expired_session_reports_it_once(api, subscribed):
    expired_id, _ = new_session(api)
    expires_at = OtpSession.objects.get(public_id=expired_id).expires_at
    with time_machine.travel(expires_at + timedelta(seconds=20), tick=False):
        replacing = request_otp(api, DEST)
        assert replacing.status_code == 200 and replacing.json()["data"]["reused"] is False
        assert otp_sessions_expire() == 0  # nothing left for the sweep

    assert OtpSession.objects.get(public_id=expired_id).status == "EXPIRED"
    assert OtpSession.objects.get(public_id=replacing.json()["data"]["sessionId"]).status == "PENDING"
    [event] = recorded("otp.expired")
    assert event["data"]["sessionId"] == expired_id and event["data"]["status"] == "EXPIRED"
    assert event["timestamp"] == expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # when it expired, exactly


def test_a_session_replaced_while_valid_is_reported_expired_when_replaced(api, workspace, subscribed):
    Workspace.objects.filter(pk=workspace.pk).update(otp_reuse_enabled=False, destination_limit=10)
    replaced_id, _ = new_session(api)
    with time_machine.travel(timezone.now() + timedelta(seconds=40), tick=False):
        replaced_at = timezone.now()
        assert request_otp(api, DEST).json()["data"]["reused"] is False

    assert OtpSession.objects.get(public_id=replaced_id).status == "EXPIRED"
    [event] = recorded("otp.expired")
    assert event["data"]["sessionId"] == replaced_id
    assert event["timestamp"] == replaced_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_refused_request_replaces_nothing_and_reports_nothing(api, workspace, subscribed):
    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=1)  # per 600 s; the code lives 300 s
    expired_id, _ = new_session(api)
    with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
        refused = request_otp(api, DEST)
        assert refused.status_code == 429 and refused.json()["code"] == "DESTINATION_RATE_LIMITED"
        assert OtpSession.objects.get(public_id=expired_id).status == "PENDING"  # as it was
        assert not recorded("otp.expired")
        assert otp_sessions_expire() == 1  # the sweep reports it, once
    assert [event["data"]["sessionId"] for event in recorded("otp.expired")] == [expired_id]


def test_a_live_session_is_left_to_run(api, subscribed):
    request_otp(api, DEST)
    assert otp_sessions_expire() == 0
    assert not WebhookDelivery.objects.exists()


def test_without_a_subscription_nothing_is_recorded(api, workspace, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    webhook_endpoint_create(workspace=workspace, url="http://hooks.internal/otp", events=["otp.sent"])
    session_id, code = new_session(api)
    verify(api, session_id, code)
    assert not WebhookDelivery.objects.exclude(event_type="otp.sent").exists()


def test_a_test_sessions_changes_fire_no_webhooks(workspace, sender, subscribed):
    test_api = api_client(issue_key(workspace, test=True)[1])
    session_id = request_otp(test_api, DEST).json()["data"]["sessionId"]
    [sms] = test_api.get("/v1/messaging/test-inbox", {"dest": DEST}).json()["data"]
    code = re.search(r"\b\d{6}\b", sms["text"]).group()
    assert verify(test_api, session_id, code).json()["data"]["status"] == "APPROVED"
    other = request_otp(test_api, DEST, purpose="PASSWORD_RESET").json()["data"]["sessionId"]
    assert cancel(test_api, other).status_code == 200
    expiring = request_otp(test_api, DEST, purpose="ACCOUNT_RECOVERY").json()["data"]["sessionId"]
    with time_machine.travel(timezone.now() + timedelta(seconds=301), tick=False):
        assert otp_sessions_expire() == 1
    assert OtpSession.objects.get(public_id=expiring).status == "EXPIRED"
    assert not WebhookDelivery.objects.exists()
