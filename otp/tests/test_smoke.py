import re

from otp.models import OtpSession, SmsMessage
from otp.services import sms_deliver
from conftest import DEST


def test_request_then_deliver_then_verify(api, sms_outbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post("/v1/messaging/otp/request", {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"},
                            format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["message"] == "OTP sent successfully"
    assert body["data"]["expiresInSeconds"] == 300
    assert len(callbacks) == 1
    message = SmsMessage.objects.get()
    assert sms_deliver(message_id=message.pk) == "sent"
    code = re.search(r"\d{6}", sms_outbox[0].text).group()
    verify = api.post("/v1/messaging/otp/verify", {"sessionId": body["data"]["sessionId"], "code": code},
                      format="json")
    assert verify.status_code == 200, verify.json()
    assert OtpSession.objects.get().status == "APPROVED"
