"""Every response under /v1/ is the envelope, whatever went wrong."""

import logging

import pytest
from rest_framework.test import APIClient

from otp.models import OtpSession
from otp.tests.helpers import REQUEST_URL, VERIFY_URL
from zeckta.testing import DEST, assert_api_error

pytestmark = pytest.mark.django_db


def test_an_unknown_route_is_a_not_found_envelope(api):
    assert_api_error(api.get("/v1/messaging/nothing-here"), status=404, code="NOT_FOUND")
    assert_api_error(APIClient().get("/v1/"), status=404, code="NOT_FOUND")


def test_a_wrong_method_is_method_not_allowed(api):
    assert_api_error(api.get(REQUEST_URL), status=405, code="METHOD_NOT_ALLOWED")
    assert_api_error(api.delete(VERIFY_URL), status=405, code="METHOD_NOT_ALLOWED")
    assert_api_error(api.options(REQUEST_URL), status=405, code="METHOD_NOT_ALLOWED")
    assert api.get(REQUEST_URL)["Allow"] == "POST"
    assert_api_error(api.put(REQUEST_URL, {}, format="json"), status=405, code="METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "application/xml"])
def test_a_body_that_is_not_json_is_unsupported_media_type(api, content_type):
    response = api.generic("POST", REQUEST_URL, f"dest={DEST}&src=ZECKTA&purpose=LOGIN", content_type=content_type)
    assert_api_error(response, status=415, code="UNSUPPORTED_MEDIA_TYPE")
    assert not OtpSession.objects.exists()


def test_a_body_without_content_type_is_unsupported_media_type(api):
    response = api.generic("POST", REQUEST_URL, b'{"dest": "x"}', content_type="")
    assert_api_error(response, status=415, code="UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"string"', b"null", b'{"dest": NaN}', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_is_malformed(api, raw):
    response = api.generic("POST", REQUEST_URL, raw, content_type="application/json")
    assert_api_error(response, status=400, code="MALFORMED_JSON")


def test_an_oversized_body_is_refused(api):
    big = b'{"dest": "' + b"1" * 70_000 + b'"}'  # over the 64 KiB of API.md section 1
    assert_api_error(
        api.generic("POST", REQUEST_URL, big, content_type="application/json"), status=413, code="PAYLOAD_TOO_LARGE"
    )


def test_a_validation_error_lists_fields(api):
    body = assert_api_error(api.post(REQUEST_URL, {}, format="json"), status=400, code="VALIDATION_ERROR")
    assert set(body["errors"]) == {"dest", "src", "purpose"}


def test_success_responses_carry_request_id_and_no_store(api):
    response = api.post(REQUEST_URL, {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json")
    assert response.status_code == 200
    assert response.json()["requestId"] == response["X-Request-ID"]
    assert response["Cache-Control"] == "no-store"


def test_each_request_gets_its_own_request_id(api):
    first = api.get("/v1/nope")["X-Request-ID"]
    second = api.get("/v1/nope")["X-Request-ID"]
    assert first != second


def test_an_unexpected_error_is_an_internal_error_envelope_without_internals(api, monkeypatch, caplog):
    def explode(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("otp.services.otp_request", explode)
    client = api
    client.raise_request_exception = False
    response = client.post(REQUEST_URL, {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}, format="json")

    body = assert_api_error(response, status=500, code="INTERNAL_ERROR")
    assert "secret internals" not in response.content.decode() and "Traceback" not in response.content.decode()
    logged = [r for r in caplog.records if r.name == "zeckta.api"]
    assert logged and logged[0].request_id == body["requestId"]


def test_the_request_id_is_in_the_log_lines_of_the_request(api, caplog):
    caplog.set_level(logging.WARNING, logger="django.request")
    response = api.post(REQUEST_URL, {}, format="json")
    request_id = response["X-Request-ID"]
    lines = [r for r in caplog.records if r.name == "django.request"]
    assert lines and all(r.request_id == request_id for r in lines)
