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


def test_a_sender_name_that_sessions_used_is_soft_deleted_and_can_be_requested_again(api, sender):
    """API.md section 5: delete always works; the sessions keep their `src`; the name can send no more."""
    session_id = api.post(
        "/v1/messaging/otp/request", {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json"
    ).json()["data"]["sessionId"]

    deleted = api.delete(detail_url(sender.public_id))
    gone = api.get(detail_url(sender.public_id))
    listed = api.get(URL).json()["data"]["items"]
    cannot_send = api.post(
        "/v1/messaging/otp/request", {"dest": "+233244123456", "src": "ZECKTA", "purpose": "LOGIN"}, format="json"
    )
    session = api.get(f"/v1/messaging/otp/{session_id}").json()["data"]
    again = api.post(URL, body("ZECKTA"), format="json")

    assert deleted.status_code == 200
    assert_api_error(gone, status=404, code="NOT_FOUND")
    assert [item["sender"] for item in listed] == []
    assert set(assert_api_error(cannot_send, status=400, code="VALIDATION_ERROR")["errors"]) == {"src"}
    assert session["src"] == "ZECKTA"
    assert again.status_code == 201 and again.json()["data"]["status"] == "PENDING"
    assert again.json()["data"]["senderNameId"] != str(sender.public_id)
    assert OtpSession.objects.get().sender_name_id == sender.pk  # the session still points at its name
    assert SenderName.objects.filter(name="ZECKTA").count() == 2
