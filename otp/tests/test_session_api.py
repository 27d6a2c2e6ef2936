import uuid

import pytest
import time_machine
from django.utils import timezone

from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.testing import DEST, api_client

pytestmark = pytest.mark.django_db


def test_it_shows_the_session_and_its_delivery(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    response = api.get(session_url(session_id))

    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {
        "sessionId",
        "dest",
        "src",
        "purpose",
        "status",
        "expiresInSeconds",
        "attemptsLeft",
        "resendAvailableInSeconds",
        "resends",
        "transaction",
        "createdAt",
        "verifiedAt",
        "delivery",
    }
    assert data["resendAvailableInSeconds"] == 30 and data["resends"] == 0 and data["transaction"] is None
    assert data["sessionId"] == session_id and data["dest"] == DEST and data["src"] == "ZECKTA"
    assert data["purpose"] == "LOGIN" and data["status"] == "PENDING" and data["verifiedAt"] is None
    assert data["createdAt"].endswith("Z") and "T" in data["createdAt"]
    assert data["delivery"]["status"] == "queued" and data["delivery"]["attempts"] == 0
    assert set(data["delivery"]) == {
        "status",
        "segments",
        "units",
        "attempts",
        "updatedAt",
        "route",
        "deliveredAt",
        "channel",
    }
    assert data["delivery"]["channel"] == "sms"


def test_after_delivery_and_approval_it_shows_both(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    verify(api, session_id, deliver_and_read_code(session_id))

    data = api.get(session_url(session_id)).json()["data"]
    assert data["status"] == "APPROVED" and data["verifiedAt"].endswith("Z")
    assert data["delivery"]["status"] == "sent" and data["delivery"]["attempts"] == 1
    assert data["delivery"]["segments"] == data["delivery"]["units"] == 1


def test_a_pending_session_past_its_expiry_reads_expired(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    with time_machine.travel(timezone.now() + timezone.timedelta(seconds=400)):
        data = api.get(session_url(session_id)).json()["data"]
    assert data["status"] == "EXPIRED" and data["expiresInSeconds"] == 0


def test_another_workspaces_session_is_not_found(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    other = api_client(issue_key(WorkspaceFactory())[1])

    foreign = other.get(session_url(session_id))
    missing = other.get(session_url(str(uuid.uuid4())))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "NOT_FOUND"
    assert foreign.content.replace(foreign["X-Request-ID"].encode(), b"") == missing.content.replace(
        missing["X-Request-ID"].encode(), b""
    )


def test_a_non_uuid_session_path_is_not_found(api):
    response = api.get("/v1/messaging/otp/not-a-uuid")
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"
