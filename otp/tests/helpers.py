"""Small helpers for OTP tests: request a code and read it back from the fake SMS gateway."""

import re
from datetime import timedelta

import time_machine
from django.utils import timezone

from otp.delivery import sms_deliver
from otp.models import SmsMessage
from senders.gateways import locmem
from zeckta.testing import DEST

REQUEST_URL = "/v1/messaging/otp/request"
VERIFY_URL = "/v1/messaging/otp/verify"


def session_url(session_id: str) -> str:
    return f"/v1/messaging/otp/{session_id}"


def request_otp(api, dest: str, *, src: str = "ZECKTA", purpose: str = "LOGIN", **extra):
    return api.post(REQUEST_URL, {"dest": dest, "src": src, "purpose": purpose, **extra}, format="json")


def new_session(api, dest: str = DEST, **extra) -> str:
    """Requests a code and returns its sessionId, failing the test unless the request succeeded."""
    response = request_otp(api, dest, **extra)
    assert response.status_code == 200, response.json()
    return response.json()["data"]["sessionId"]


def later(seconds: int):
    """Travels `seconds` ahead (or back), the clock standing still there."""
    return time_machine.travel(timezone.now() + timedelta(seconds=seconds), tick=False)


def deliver_and_read_code(session_id: str, *, length: int = 6) -> str:
    """Runs the send task for a session's latest SMS (as the worker would) and returns the code it carried."""
    message = SmsMessage.objects.filter(session__public_id=session_id).latest("id")
    sms_deliver(message_id=message.pk)
    sent = [sms for sms in locmem.outbox if sms.reference == str(message.public_id)]
    assert len(sent) == 1
    return re.search(rf"\b\d{{{length}}}\b", sent[0].text).group()


def verify(api, session_id: str, code: str, **extra):
    return api.post(VERIFY_URL, {"sessionId": session_id, "code": code, **extra}, format="json")


def resend(api, session_id: str, **headers):
    return api.post(f"{session_url(session_id)}/resend", {}, format="json", **headers)


def cancel(api, session_id: str):
    return api.post(f"{session_url(session_id)}/cancel", {}, format="json")


def wrong_code(code: str) -> str:
    return str((int(code) + 1) % 10 ** len(code)).zfill(len(code))
