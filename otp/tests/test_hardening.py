"""Answers the contract gives where it used to be silent, and the abuse limits added after an attack review
(API.md sections 1 to 3). Black-box over HTTP: status, envelope and what was written."""

import io
import json
from datetime import timedelta

import phonenumbers
import pytest
import time_machine
from django.test import RequestFactory
from django.test.client import ClientHandler
from django.utils import timezone

from otp.crypto import decrypt_text
from otp.delivery import sms_deliver
from otp.models import OtpSession, SmsMessage
from otp.tests.helpers import (
    REQUEST_URL,
    VERIFY_URL,
    deliver_and_read_code,
    request_otp,
    session_url,
    verify,
    wrong_code,
)
from workspaces.models import LedgerEntry
from zeckta.testing import DEST, assert_api_error

# Each test runs against both versions of the request and verify rules (otp_path in conftest).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("otp_path")]

OTHER_DEST = "+233244123456"
BODY_LIMIT = 64 * 1024  # bytes: API.md section 1


def non_geographic(country_calling_code: int) -> str:
    """A valid mobile number of a network that belongs to no country (region 001)."""
    number = phonenumbers.example_number_for_non_geo_entity(country_calling_code)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- Verify: data on every outcome ---------------------------------------------------------------


def test_verify_of_an_unknown_session_answers_its_outcome_in_data(api):
    sent = "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01"
    response = verify(api, sent, "123456")
    assert_api_error(
        response,
        status=404,
        code="NOT_FOUND",
        data={"sessionId": sent, "status": "NOT_FOUND", "verified": False, "attemptsLeft": 0},
    )


# --- Bodies: size and depth ----------------------------------------------------------------------


def test_a_two_megabyte_body_is_refused_with_413_and_nothing_is_written(api):
    body = json.dumps({"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "padding": "x" * 2_000_000})
    response = api.post(REQUEST_URL, body, content_type="application/json")
    assert_api_error(response, status=413, code="PAYLOAD_TOO_LARGE")
    assert not OtpSession.objects.exists()


def test_the_cap_is_64_kib(api):
    base = {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "padding": ""}
    room = BODY_LIMIT - len(json.dumps(base))
    fits = json.dumps({**base, "padding": "x" * room})
    too_big = json.dumps({**base, "padding": "x" * (room + 1)})

    assert api.post(REQUEST_URL, fits, content_type="application/json").status_code == 200
    assert_api_error(
        api.post(REQUEST_URL, too_big, content_type="application/json"), status=413, code="PAYLOAD_TOO_LARGE"
    )


def call_wsgi(environ: dict) -> tuple[int, dict]:
    """Runs the request handler on a hand-made environ (as gunicorn passes a chunked body: no CONTENT_LENGTH),
    with the test client's handler so the test's database connection stays open."""
    response = ClientHandler()(environ)
    return response.status_code, json.loads(response.content)


def chunked_environ(raw_key: str, body: bytes) -> dict:
    environ = RequestFactory().post(REQUEST_URL, b"", content_type="application/json").environ
    environ.pop("CONTENT_LENGTH", None)
    environ.update(
        {
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "CONTENT_TYPE": "application/json",
            "HTTP_TRANSFER_ENCODING": "chunked",
            "HTTP_AUTHORIZATION": f"Bearer {raw_key}",
        }
    )
    return environ


def test_a_chunked_body_is_read_and_capped_like_any_other(raw_key, sender):
    small = json.dumps({"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}).encode()
    big = json.dumps({"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "padding": "x" * BODY_LIMIT}).encode()

    too_big_status, too_big = call_wsgi(chunked_environ(raw_key, big))
    assert (too_big_status, too_big["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert not OtpSession.objects.exists()
    status, body = call_wsgi(chunked_environ(raw_key, small))
    assert status == 200, body
    assert OtpSession.objects.count() == 1


def nested(depth: int) -> object:
    """`depth` levels of arrays and objects, alternating, counting the outermost."""
    value: object = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def test_json_nested_deeper_than_32_levels_is_malformed_and_32_is_fine(api):
    def post(padding_depth: int):
        # The body object is level 1, so its `padding` may hold 31 more.
        body = {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN", "padding": nested(padding_depth)}
        return api.post(REQUEST_URL, json.dumps(body), content_type="application/json")

    assert post(31).status_code == 200
    assert_api_error(post(32), status=400, code="MALFORMED_JSON")
    assert_api_error(
        api.post(REQUEST_URL, "[" * 5000 + "]" * 5000, content_type="application/json"),
        status=400,
        code="MALFORMED_JSON",
    )
    assert_api_error(
        api.post(REQUEST_URL, '{"a":' * 5000 + "1" + "}" * 5000, content_type="application/json"),
        status=400,
        code="MALFORMED_JSON",
    )
    assert OtpSession.objects.count() == 1


def test_null_optional_fields_are_the_same_as_absent_ones(api):
    response = request_otp(api, DEST, messageTemplate=None)
    assert response.status_code == 200, response.json()


# --- Transport: HTTPS and Host -------------------------------------------------------------------


def test_plain_http_to_the_api_is_refused_without_a_redirect(api, settings):
    settings.SECURE_SSL_REDIRECT = True  # as with DEBUG=False in production

    plain = request_otp(api, DEST)
    behind_proxy = api.post(
        REQUEST_URL, {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json", HTTP_X_FORWARDED_PROTO="https"
    )
    admin = api.get("/admin/login/")

    assert_api_error(plain, status=403, code="HTTPS_REQUIRED")
    assert behind_proxy.status_code == 200
    assert admin.status_code == 301 and admin["Location"].startswith("https://")
    assert OtpSession.objects.count() == 1


def test_the_forwarded_proto_header_is_ignored_when_not_trusted(api, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = None  # TRUST_X_FORWARDED_PROTO=False

    response = api.post(
        REQUEST_URL, {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json", HTTP_X_FORWARDED_PROTO="https"
    )

    assert_api_error(response, status=403, code="HTTPS_REQUIRED")


def test_a_host_outside_allowed_hosts_gets_the_envelope(api):
    response = api.post(
        REQUEST_URL, {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json", HTTP_HOST="evil.example"
    )
    assert_api_error(response, status=400, code="INVALID_HOST")
    assert not OtpSession.objects.exists()


# --- Guess budget per destination ----------------------------------------------------------------


def test_a_new_session_never_buys_a_fresh_guess_budget(api, workspace):
    workspace.destination_limit = 100  # the SMS window is not what this test is about
    workspace.save()
    started = timezone.now()
    with time_machine.travel(started, tick=False) as clock:
        for _ in range(4):  # 4 sessions x 5 wrong codes = the default budget of 20
            session_id = request_otp(api, DEST).json()["data"]["sessionId"]
            code = deliver_and_read_code(session_id)
            for _ in range(5):
                verify(api, session_id, wrong_code(code))
            clock.shift(timedelta(minutes=1))

        refused = request_otp(api, DEST)
        elsewhere = request_otp(api, OTHER_DEST)

        body = assert_api_error(refused, status=429, code="DESTINATION_RATE_LIMITED")
        assert body["message"]
        # The oldest wrong codes were made at `started`: the budget reopens 24 h after them.
        reopens_in = timedelta(hours=24) - timedelta(minutes=4)
        assert int(refused["Retry-After"]) == pytest.approx(reopens_in.total_seconds(), abs=2)
        assert elsewhere.status_code == 200
        clock.move_to(started + timedelta(hours=24, seconds=1))
        assert request_otp(api, DEST).status_code == 200
    assert OtpSession.objects.filter(dest=DEST).count() == 5


def test_the_guess_budget_is_per_workspace_setting(api, workspace):
    workspace.wrong_code_budget = 2
    workspace.save()
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    verify(api, session_id, wrong_code(code))
    verify(api, session_id, wrong_code(code))
    workspace.otp_reuse_enabled = False
    workspace.save()

    assert_api_error(request_otp(api, DEST), status=429, code="DESTINATION_RATE_LIMITED")


# --- SMS pumping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("calling_code", [870, 881, 882])
def test_numbers_of_no_country_are_refused_unless_the_workspace_lists_001(api, workspace, calling_code):
    dest = non_geographic(calling_code)

    refused = request_otp(api, dest)
    body = assert_api_error(refused, status=400, code="VALIDATION_ERROR")
    assert set(body["errors"]) == {"dest"}
    assert not OtpSession.objects.exists()

    workspace.allowed_countries = "001"
    workspace.save()
    accepted = request_otp(api, dest)
    assert accepted.status_code == 200, accepted.json()
    assert OtpSession.objects.get().country == "001"


def test_the_workspace_daily_cap_refuses_the_next_sms_until_the_utc_day_ends(api, workspace):
    workspace.daily_sms_cap = 2
    workspace.save()
    with time_machine.travel("2026-12-02T23:59:00Z", tick=False) as clock:
        assert request_otp(api, DEST).status_code == 200
        assert request_otp(api, OTHER_DEST).status_code == 200
        refused = request_otp(api, "+233201234567")
        reused = request_otp(api, DEST)

        assert_api_error(refused, status=429, code="WORKSPACE_QUOTA_EXCEEDED")
        assert refused["Retry-After"] == "60"
        assert reused.status_code == 200 and reused.json()["data"]["reused"] is True  # sends nothing, costs nothing
        clock.move_to("2026-12-03T00:00:01Z")
        assert request_otp(api, "+233201234567").status_code == 200
    assert SmsMessage.objects.count() == 3


def test_a_daily_cap_of_zero_means_no_cap(api, workspace):
    workspace.daily_sms_cap = 0
    workspace.destination_limit = 100
    workspace.otp_reuse_enabled = False
    workspace.save()
    assert all(request_otp(api, DEST).status_code == 200 for _ in range(5))


# --- Templates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("character", ["\u202e", "\u200b", "\u2066", "\ufeff"])
def test_a_template_with_a_unicode_format_character_is_refused(api, character):
    response = request_otp(api, DEST, messageTemplate=f"Your code: {character}<OTP>")
    body = assert_api_error(response, status=400, code="VALIDATION_ERROR")
    assert set(body["errors"]) == {"messageTemplate"}
    assert not OtpSession.objects.exists()


# --- Reuse and refunds around failed or approved deliveries ---------------------------------------


def test_a_session_whose_sms_failed_for_good_is_not_reused(api):
    first = request_otp(api, DEST).json()["data"]["sessionId"]
    SmsMessage.objects.filter(session__public_id=first).update(status=SmsMessage.Status.FAILED)

    second = request_otp(api, DEST)

    assert second.status_code == 200
    assert second.json()["data"]["reused"] is False and second.json()["data"]["sessionId"] != first
    assert api.get(session_url(first)).json()["data"]["status"] == "EXPIRED"
    assert SmsMessage.objects.count() == 2


def test_an_approved_sessions_sms_is_settled_sent_and_never_refunded(api, workspace):
    """A gateway timeout that in fact delivered: the retry finds the session approved, so the SMS arrived."""
    workspace.is_prepaid, workspace.balance_units = True, 5
    workspace.save()
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    message = SmsMessage.objects.get()
    code = next(word for word in decrypt_text(message.encrypted_text).replace(".", " ").split() if word.isdigit())
    SmsMessage.objects.filter(pk=message.pk).update(attempts=1)  # the first call timed out; a retry is queued
    assert verify(api, session_id, code).status_code == 200

    assert sms_deliver(message_id=message.pk) == SmsMessage.Status.SENT

    workspace.refresh_from_db()
    assert workspace.balance_units == 4
    assert not LedgerEntry.objects.filter(reason=LedgerEntry.Reason.REFUND).exists()
    assert SmsMessage.objects.get().encrypted_text is None


# --- Verify url for completeness: the other verify answers keep their data -----------------------


def test_a_wrong_code_answer_still_holds_the_session(api):
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    code = deliver_and_read_code(session_id)
    response = api.post(VERIFY_URL, {"sessionId": session_id, "code": wrong_code(code)}, format="json")
    assert_api_error(
        response,
        status=400,
        code="INVALID",
        data={"sessionId": session_id, "status": "INVALID", "verified": False, "attemptsLeft": 4},
    )
