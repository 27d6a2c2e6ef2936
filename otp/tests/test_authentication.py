import datetime

import pytest
import time_machine
from django.utils import timezone
from rest_framework.test import APIClient

from otp.models import OtpSession
from otp.tests.helpers import REQUEST_URL
from workspaces.models import ApiKey
from workspaces.services import api_key_revoke
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST, assert_api_error

pytestmark = pytest.mark.django_db

BODY = {"dest": DEST, "src": "ZECKTA", "purpose": "LOGIN"}


def call(authorization: str | None, url: str = REQUEST_URL):
    client = APIClient()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.post(url, BODY, format="json")


def comparable(response) -> tuple:
    body = {key: value for key, value in response.json().items() if key != "requestId"}
    return response.status_code, response["WWW-Authenticate"], body


def test_every_credential_failure_is_one_identical_401(raw_key, issued_key, sender):
    expired_key = issue_key(sender.workspace, expires_in_days=1)
    ApiKey.objects.filter(pk=expired_key[0].pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    revoked_key = issue_key(sender.workspace)
    api_key_revoke(prefix=revoked_key[0].prefix)
    tampered = raw_key[:-2] + ("AA" if not raw_key.endswith("AA") else "BB")

    failures = [
        call(None),
        call(""),
        call(f"Basic {raw_key}"),
        call(f"Token {raw_key}"),
        call("Bearer"),
        call(f"Bearer {raw_key} extra"),
        call("Bearer zk_live_unknown"),
        call("Bearer not-even-a-key"),
        call(f"Bearer {tampered}"),
        call(f"Bearer {expired_key[1]}"),
        call(f"Bearer {revoked_key[1]}"),
        call("Bearer " + "x" * 5000),
    ]
    shapes = {str(comparable(r)) for r in failures}
    assert len(shapes) == 1
    status, challenge, body = comparable(failures[0])
    assert status == 401 and challenge == "Bearer"
    assert body["code"] == "AUTHENTICATION_FAILED" and body["success"] is False and body["data"] is None
    assert not OtpSession.objects.exists()


def test_a_key_in_the_url_is_not_accepted(raw_key, sender):
    response = APIClient().post(f"{REQUEST_URL}?api_key={raw_key}", BODY, format="json")
    assert response.status_code == 401


def test_a_valid_key_is_accepted_and_marks_last_used(raw_key, issued_key, sender):
    assert call(f"Bearer {raw_key}").status_code == 200
    assert call(f"bearer {raw_key}").status_code == 200  # the scheme is case-insensitive (RFC 7235)
    issued_key[0].refresh_from_db()
    assert issued_key[0].last_used_at is not None


def test_a_key_expiring_in_the_future_still_works(workspace, sender):
    _, raw = issue_key(workspace, expires_in_days=30)
    assert call(f"Bearer {raw}").status_code == 200


def test_a_suspended_workspace_is_forbidden(raw_key, workspace, sender):
    workspace.is_active = False
    workspace.save()
    response = call(f"Bearer {raw_key}")
    body = response.json()
    assert response.status_code == 403 and body["code"] == "WORKSPACE_SUSPENDED" and body["success"] is False
    assert not OtpSession.objects.exists()


def test_the_raw_key_is_never_stored(raw_key, issued_key):
    row = ApiKey.objects.get(pk=issued_key[0].pk)
    assert raw_key.startswith("zk_live_") and len(raw_key) >= 8 + 43
    assert raw_key not in {row.prefix, row.digest, row.name}
    assert raw_key.startswith(row.prefix) and len(row.digest) == 64


def test_keys_rotate_without_downtime(workspace, sender, issued_key, raw_key):
    """Issue a new key, move clients over, then revoke the old one: both work until the revocation."""
    _, new_raw = issue_key(workspace, name="rotated")
    assert call(f"Bearer {raw_key}").status_code == 200
    assert call(f"Bearer {new_raw}", url="/v1/messaging/otp/verify").status_code == 400  # authenticated
    api_key_revoke(prefix=issued_key[0].prefix)
    assert call(f"Bearer {raw_key}").status_code == 401
    assert call(f"Bearer {new_raw}", url="/v1/messaging/otp/verify").status_code == 400


# --- Failed authentication is limited per client address (API.md section 1) -----------------------


def call_from(address: str, authorization: str | None):
    client = APIClient(REMOTE_ADDR=address)
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    return client.post(REQUEST_URL, BODY, format="json")


def test_after_60_failures_in_a_minute_an_address_gets_429_until_the_window_passes(raw_key, sender):
    attacker, bystander = "203.0.113.7", "198.51.100.20"
    with time_machine.travel("2026-12-02T10:00:10Z", tick=False) as clock:
        failures = [call_from(attacker, "Bearer zk_live_guess" + str(n)).status_code for n in range(60)]
        limited = call_from(attacker, "Bearer zk_live_another-guess")
        no_header = call_from(attacker, None)
        valid_key = call_from(attacker, f"Bearer {raw_key}")
        other_address = call_from(bystander, "Bearer zk_live_guess")

        assert failures == [401] * 60
        body = assert_api_error(limited, status=429, code="RATE_LIMITED")
        assert body["message"]
        assert 1 <= int(limited["Retry-After"]) <= 60
        assert no_header.status_code == 429
        assert valid_key.status_code == 200  # a valid key is never slowed by it
        assert other_address.status_code == 401
        clock.shift(datetime.timedelta(seconds=int(limited["Retry-After"])))
        assert call_from(attacker, "Bearer zk_live_guess-again").status_code == 401
    assert OtpSession.objects.count() == 1
