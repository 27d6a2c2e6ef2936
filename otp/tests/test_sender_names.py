"""OTP requests and the sender names they send from, over HTTP."""

from otp.models import OtpSession
from senders.models import SenderName
from senders.services import sender_name_approve
from zeckta.testing import DEST, assert_api_error

URL = "/v1/messaging/sender-names"


def detail_url(sender_name_id) -> str:
    return f"{URL}/{sender_name_id}"


def body(sender: str = "MYSHOP", sender_type: str = "alphanumeric", purpose: str = "Login codes", **extra) -> dict:
    return {"sender": sender, "senderType": sender_type, "purpose": purpose, **extra}


def test_a_sender_created_through_the_api_cannot_send_otps_until_approved(api, workspace):
    created = api.post(URL, body("NEWBRAND"), format="json").json()["data"]
    otp_request = {"dest": DEST, "src": "NEWBRAND", "purpose": "LOGIN"}

    refused = api.post("/v1/messaging/otp/request", otp_request, format="json")

    assert_api_error(refused, status=400, code="VALIDATION_ERROR")
    assert set(refused.json()["errors"]) == {"src"}
    assert not OtpSession.objects.exists()

    sender_name_approve(sender_name=SenderName.objects.get(public_id=created["senderNameId"]))
    accepted = api.post("/v1/messaging/otp/request", otp_request, format="json")

    assert accepted.status_code == 200, accepted.json()
    assert OtpSession.objects.get().src == "NEWBRAND"


def test_a_sender_that_otp_sessions_refer_to_is_not_deleted(api, sender):
    assert (
        api.post(
            "/v1/messaging/otp/request", {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json"
        ).status_code
        == 200
    )

    response = api.delete(detail_url(sender.public_id))

    assert response.status_code == 409
    assert response.json()["code"] == "SENDER_NAME_IN_USE"
    assert SenderName.objects.filter(pk=sender.pk).exists()
    assert OtpSession.objects.get().sender_name_id == sender.pk
