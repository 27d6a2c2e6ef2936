"""`appHash` and `webOtpDomain` (API.md sections 2 and 8): the exact SMS each produces, and its segments."""

import pytest

from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import deliver_and_read_code, request_otp
from senders.gateways import locmem
from zeckta.testing import DEST, assert_api_error

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]

TEXT = "Your login code is {code}. It expires in 5 minutes. Never share it with anyone."


def sent_text(response) -> tuple[str, str]:
    """The SMS the provider got for this answer's session, and the code in it."""
    assert response.status_code == 200, response.json()
    code = deliver_and_read_code(response.json()["data"]["sessionId"])
    return locmem.outbox[-1].text, code


def test_the_webotp_line_is_the_last_line(api):
    text, code = sent_text(request_otp(api, DEST, webOtpDomain="Login.Example.com"))
    assert text == TEXT.format(code=code) + f"\n@login.example.com #{code}"


def test_the_app_hash_goes_on_its_own_line_after_the_text(api):
    text, code = sent_text(request_otp(api, DEST, appHash="FA+9qCX9VSu"))
    assert text == TEXT.format(code=code) + "\nFA+9qCX9VSu"


def test_with_both_the_app_hash_comes_first_and_the_webotp_line_stays_last(api):
    text, code = sent_text(request_otp(api, DEST, appHash="FA+9qCX9VSu", webOtpDomain="example.com"))
    assert text == TEXT.format(code=code) + f"\nFA+9qCX9VSu\n@example.com #{code}"


def test_a_custom_template_keeps_its_text_and_gets_the_lines_after_it(api):
    text, code = sent_text(request_otp(api, DEST, messageTemplate="<OTP> is your Acme code", webOtpDomain="acme.io"))
    assert text == f"{code} is your Acme code\n@acme.io #{code}"


def test_a_ucs2_text_crosses_into_a_second_segment_only_because_of_the_autofill_line(api):
    # 50 characters with the 6-digit code, UCS-2 because of the Cyrillic: one segment of at most 70 ...
    template = "Ваш код <OTP>. Никому его не сообщайте, даже нам."
    alone = request_otp(api, DEST, messageTemplate=template)
    assert SmsMessage.objects.get(session__public_id=alone.json()["data"]["sessionId"]).segments == 1
    # ... and 50 + 1 + 20 = 71 with "\n@example.com #123456": two segments (67 each when concatenated).
    response = request_otp(api, "+233244123456", messageTemplate=template, webOtpDomain="example.com")
    message = SmsMessage.objects.get(session__public_id=response.json()["data"]["sessionId"])
    assert (message.encoding, message.segments, message.units) == ("UCS-2", 2, 2)
    text, code = sent_text(response)
    assert len(text) == 71 and text.endswith(f"\n@example.com #{code}")


def test_a_gsm7_text_is_counted_whole_too(api):
    template = "<OTP> " + "x" * 148  # 154 characters: one GSM-7 segment alone
    response = request_otp(api, DEST, messageTemplate=template, appHash="FA+9qCX9VSu")  # + 12 = 166: two
    message = SmsMessage.objects.get(session__public_id=response.json()["data"]["sessionId"])
    assert (message.encoding, message.segments, message.units) == ("GSM-7", 2, 2)


@pytest.mark.parametrize(
    "field, value",
    [
        ("appHash", "FA+9qCX9VS"),  # 10 characters
        ("appHash", "FA+9qCX9VS-"),  # '-' is not in the alphabet
        ("appHash", "FA+9qCX9VSuu"),  # 12
        ("webOtpDomain", "https://example.com"),
        ("webOtpDomain", "example.com:443"),
        ("webOtpDomain", "example.com/login"),
        ("webOtpDomain", "-example.com"),
        ("webOtpDomain", "exa mple.com"),
        ("webOtpDomain", ""),
        ("webOtpDomain", 42),
    ],
)
def test_a_malformed_autofill_field_is_a_validation_error_and_sends_nothing(api, field, value):
    body = assert_api_error(request_otp(api, DEST, **{field: value}), status=400, code="VALIDATION_ERROR")
    assert set(body["errors"]) == {field}
    assert OtpSession.objects.count() == 0 and SmsMessage.objects.count() == 0


def test_null_autofill_fields_are_the_same_as_none(api):
    text, code = sent_text(request_otp(api, DEST, appHash=None, webOtpDomain=None))
    assert text == TEXT.format(code=code)
