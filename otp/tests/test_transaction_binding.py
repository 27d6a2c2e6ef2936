"""`transaction` on TRANSACTION requests (API.md sections 2, 3 and 8): shown in the SMS, bound to the code."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from otp.crypto import code_digest
from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import deliver_and_read_code, request_otp, resend, session_url, verify, wrong_code
from otp.transactions import Transaction
from senders.gateways import locmem
from workspaces.models import Workspace
from zeckta.testing import DEST, assert_api_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]

PAYMENT = {"amount": "125.50", "currency": "GHS", "payee": "Acme Shop"}


def pay(api, transaction: dict | None = None, **extra):
    return request_otp(api, DEST, purpose="TRANSACTION", transaction=transaction or PAYMENT, **extra)


def test_the_default_text_names_the_amount_and_the_payee(api):
    session_id = pay(api).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert locmem.outbox[-1].text == (
        f"Your code to approve GHS 125.50 to Acme Shop is {code}. It expires in 5 minutes. Never share it with anyone."
    )


def test_a_template_places_amount_and_payee(api):
    session_id = pay(api, messageTemplate="Pay <AMOUNT> to <PAYEE>? Code <OTP>").json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert locmem.outbox[-1].text == f"Pay GHS 125.50 to Acme Shop? Code {code}"


def test_a_payee_is_text_and_never_a_placeholder(api):
    transaction = {"amount": "1", "currency": "usd", "payee": "<OTP> <MINUTES>"}
    session_id = pay(api, transaction, messageTemplate="<PAYEE>: <AMOUNT>, code <OTP>").json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert locmem.outbox[-1].text == f"<OTP> <MINUTES>: USD 1.00, code {code}"


def test_the_session_view_shows_the_transaction_normalised(api):
    session_id = pay(api, {"amount": "125.5", "currency": "ghs", "payee": "Acme Shop"}).json()["data"]["sessionId"]
    data = api.get(session_url(session_id)).json()["data"]
    assert data["transaction"] == PAYMENT and data["purpose"] == "TRANSACTION"
    assert OtpSession.objects.get(public_id=session_id).transaction == PAYMENT


def test_the_code_is_bound_to_the_transaction(api):
    session_id = pay(api).json()["data"]["sessionId"]
    session = OtpSession.objects.get(public_id=session_id)
    code = deliver_and_read_code(session_id)
    assert session.code_digest == code_digest(session.public_id, code, Transaction(**PAYMENT))
    assert session.code_digest != code_digest(session.public_id, code)


def test_verify_without_the_transaction_uses_the_sessions(api):
    session_id = pay(api).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert verify(api, session_id, code).json()["data"]["status"] == "APPROVED"


def test_verify_with_the_same_transaction_in_another_spelling_approves(api):
    session_id = pay(api).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    same = {"amount": "125.5", "currency": "ghs", "payee": "Acme Shop"}
    assert verify(api, session_id, code, transaction=same).json()["data"]["status"] == "APPROVED"


@pytest.mark.parametrize("changed", [{"amount": "125.51"}, {"currency": "USD"}, {"payee": "Acme Shop Ltd"}])
def test_another_transaction_is_a_wrong_code_and_uses_an_attempt(api, changed):
    session_id = pay(api).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)

    response = verify(api, session_id, code, transaction={**PAYMENT, **changed})

    assert_api_error(
        response,
        status=400,
        code="INVALID",
        data={"sessionId": session_id, "status": "INVALID", "verified": False, "attemptsLeft": 4},
    )
    assert OtpSession.objects.get(public_id=session_id).attempts_used == 1
    assert verify(api, session_id, code, transaction=PAYMENT).json()["data"]["status"] == "APPROVED"


def test_a_transaction_named_for_a_session_without_one_is_a_wrong_code(api):
    session_id = request_otp(api, DEST, purpose="TRANSACTION").json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert verify(api, session_id, code, transaction=PAYMENT).json()["data"]["status"] == "INVALID"
    assert verify(api, session_id, code).json()["data"]["status"] == "APPROVED"


def test_a_wrong_code_with_the_right_transaction_is_invalid(api):
    session_id = pay(api).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    assert verify(api, session_id, wrong_code(code)).json()["data"]["status"] == "INVALID"
    assert verify(api, session_id, wrong_code(code), transaction=PAYMENT).json()["data"]["attemptsLeft"] == 3


def test_a_resend_keeps_the_binding_and_the_text(api, workspace):
    Workspace.objects.filter(pk=workspace.pk).update(destination_limit=10)
    session_id = pay(api).json()["data"]["sessionId"]
    deliver_and_read_code(session_id)
    with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=False):
        assert resend(api, session_id).status_code == 200
        code = deliver_and_read_code(session_id)
        assert "GHS 125.50 to Acme Shop" in locmem.outbox[-1].text
        assert (
            verify(api, session_id, code, transaction={**PAYMENT, "amount": "1.00"}).json()["data"]["status"]
            == "INVALID"
        )
        assert verify(api, session_id, code).json()["data"]["status"] == "APPROVED"


@pytest.mark.parametrize(
    ("transaction", "field"),
    [
        ({"amount": "0", "currency": "GHS", "payee": "Acme"}, "amount"),
        ({"amount": "0.00", "currency": "GHS", "payee": "Acme"}, "amount"),
        ({"amount": "-5", "currency": "GHS", "payee": "Acme"}, "amount"),
        ({"amount": "1.234", "currency": "GHS", "payee": "Acme"}, "amount"),
        ({"amount": "1e3", "currency": "GHS", "payee": "Acme"}, "amount"),
        ({"amount": 125.5, "currency": "GHS", "payee": "Acme"}, "amount"),
        ({"amount": "1", "currency": "XYZ", "payee": "Acme"}, "currency"),
        ({"amount": "1", "currency": "GHSS", "payee": "Acme"}, "currency"),
        ({"amount": "1", "currency": "GHS", "payee": ""}, "payee"),
        ({"amount": "1", "currency": "GHS", "payee": "x" * 41}, "payee"),
        ({"amount": "1", "currency": "GHS", "payee": "Acme\nShop"}, "payee"),
        ({"amount": "1", "currency": "GHS", "payee": "Acme\u202eShop"}, "payee"),
        ({"amount": "1", "currency": "GHS"}, "payee"),
    ],
)
def test_a_malformed_transaction_is_a_validation_error_and_sends_nothing(api, transaction, field):
    body = assert_api_error(pay(api, transaction), status=400, code="VALIDATION_ERROR")
    assert list(body["errors"]) == [f"transaction.{field}"], body["errors"]
    assert not SmsMessage.objects.exists()


def test_a_transaction_needs_purpose_transaction(api):
    body = assert_api_error(request_otp(api, DEST, transaction=PAYMENT), status=400, code="VALIDATION_ERROR")
    assert list(body["errors"]) == ["transaction"]
    assert not OtpSession.objects.exists()


def test_amount_and_payee_placeholders_need_a_transaction(api):
    response = request_otp(api, DEST, purpose="TRANSACTION", messageTemplate="Pay <AMOUNT>: <OTP>")
    body = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert list(body["errors"]) == ["messageTemplate"]


def test_a_null_transaction_is_the_same_as_none(api):
    response = request_otp(api, DEST, purpose="TRANSACTION", transaction=None)
    assert response.status_code == 200
    assert api.get(session_url(response.json()["data"]["sessionId"])).json()["data"]["transaction"] is None
