"""What the door keeps of the service around Twilio's shapes: TLS, idempotency, the fraud guard's refusal,
and no code in any answer. Raw HTTP where the SDK cannot say it (headers of our own, plain HTTP)."""

import base64
import re
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient

from fraud.models import number_range
from fraud.services import fraud_block_record
from otp.models import OtpSession, TestInboxMessage
from otp.selectors import inbox_list
from twilioverify.errors import twilio_error
from workspaces.models import Workspace
from workspaces.tests.factories import issue_key
from zeckta.localcache import local_caches_clear
from zeckta.testing import DEST


@pytest.fixture
def test_key(workspace, sender):
    return issue_key(workspace, name="edges", test=True)[1]


def basic(workspace, raw_key: str) -> str:
    return "Basic " + base64.b64encode(f"{workspace.account_sid}:{raw_key}".encode()).decode()


FORM = "application/x-www-form-urlencoded"


def create(client: Client, workspace, raw_key: str, *, secure: bool = False, **headers: str):
    return client.post(
        f"/v2/Services/{workspace.service_sid}/Verifications",
        urlencode({"To": DEST, "Channel": "sms"}),
        content_type=FORM,
        secure=secure,
        HTTP_AUTHORIZATION=basic(workspace, raw_key),
        **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()},
    )


def test_plain_http_is_refused_not_redirected(db, settings, workspace, test_key):
    settings.SECURE_SSL_REDIRECT = True

    plain = create(Client(), workspace, test_key)

    assert plain.status_code == 403 and plain.json()["code"] == 20403
    assert not OtpSession.objects.exists()
    assert create(Client(), workspace, test_key, secure=True).status_code == 201


def test_an_idempotency_key_replays_the_first_answer_and_sends_once(db, workspace, test_key):
    first = create(Client(), workspace, test_key, **{"Idempotency-Key": "signup-42"})
    again = create(Client(), workspace, test_key, **{"Idempotency-Key": "signup-42"})

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert OtpSession.objects.count() == 1 and TestInboxMessage.objects.count() == 1


def test_answers_carry_rate_headers_and_never_a_code(db, workspace, test_key):
    answer = create(Client(), workspace, test_key)

    assert answer.status_code == 201 and answer["Content-Type"] == "application/json"
    assert answer["X-RateLimit-Limit"] == "10"
    text = TestInboxMessage.objects.get()

    code = re.search(r"\b\d{6}\b", inbox_list(workspace=workspace, dest=DEST, now=timezone.now())[0].text).group()
    assert code not in answer.content.decode()
    assert text is not None


def test_an_unknown_path_or_method_is_in_twilios_shape(db, workspace, test_key):
    unknown = Client().get("/v2/Services/nothing/here", HTTP_AUTHORIZATION=basic(workspace, test_key))
    assert unknown.status_code == 404 and unknown.json()["code"] == 20404
    odd_service = Client().get("/v2/Services/VAé/Verifications/VE1", HTTP_AUTHORIZATION=basic(workspace, test_key))
    assert odd_service.status_code == 404 and odd_service.json()["code"] == 20404
    delete = Client().delete(
        f"/v2/Services/{workspace.service_sid}/Verifications", HTTP_AUTHORIZATION=basic(workspace, test_key)
    )
    assert delete.status_code == 405 and delete.json()["code"] == 20004
    no_auth = Client().post(
        f"/v2/Services/{workspace.service_sid}/Verifications", urlencode({"To": DEST}), content_type=FORM
    )
    assert no_auth.status_code == 401 and no_auth.json()["code"] == 20003
    assert no_auth["WWW-Authenticate"].startswith("Basic")


def test_a_fraud_guard_block_is_60410(live_server, workspace, sender):
    # The guard watches live keys' sessions only (API.md section 13): the range of DEST is blocked.
    fraud_block_record(
        workspace=workspace,
        scope="range",
        value=number_range(DEST),
        rule="range_velocity",
        mode="enforce",
        evidence={"sessions": 11, "converted": 0, "numbers": 11},
        now=timezone.now(),
    )
    client = TwilioClient(workspace.account_sid, issue_key(workspace, name="live")[1])
    client.verify.base_url = live_server.url

    with pytest.raises(TwilioRestException) as refused:
        client.verify.v2.services(workspace.service_sid).verifications.create(to=DEST, channel="sms")

    assert (refused.value.status, refused.value.code) == (403, 60410)
    assert not OtpSession.objects.exists()
    assert twilio_error(code="DESTINATION_BLOCKED", status=403, message="x").body()["more_info"].endswith("/60410")


def test_a_body_over_the_cap_is_413_and_sends_nothing(db, settings, workspace, test_key):
    settings.API_MAX_BODY_BYTES = 1024
    answer = Client().post(
        f"/v2/Services/{workspace.service_sid}/Verifications",
        urlencode({"To": DEST, "Channel": "sms", "CustomFriendlyName": "x" * 2000}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(workspace, test_key),
    )
    assert answer.status_code == 413 and answer.json()["code"] == 60200
    assert not OtpSession.objects.exists()


def test_a_suspended_workspace_is_20005(db, workspace, test_key):
    Workspace.objects.filter(pk=workspace.pk).update(is_active=False)
    local_caches_clear()

    answer = create(Client(), workspace, test_key)

    assert answer.status_code == 401 and answer.json()["code"] == 20005
    assert not OtpSession.objects.exists()


def test_failed_authentications_from_one_address_are_held_back(db, settings, workspace, test_key):
    settings.AUTH_FAILURE_LIMIT_PER_MINUTE = 3
    codes = [create(Client(), workspace, "zk_test_wrong").json()["code"] for _ in range(5)]

    assert codes[:3] == [20003, 20003, 20003] and codes[-1] == 20429
    assert create(Client(), workspace, test_key).status_code == 201  # a valid key is never held back


def test_locale_chooses_the_language_of_the_text_and_a_malformed_one_is_60200(db, workspace, test_key):
    def start(locale: str):
        return Client().post(
            f"/v2/Services/{workspace.service_sid}/Verifications",
            urlencode({"To": DEST, "Channel": "sms", "Locale": locale}),
            content_type=FORM,
            secure=True,
            HTTP_AUTHORIZATION=basic(workspace, test_key),
        )

    refused = start("pt_BR")
    assert refused.status_code == 400 and refused.json()["code"] == 60200
    assert not OtpSession.objects.exists()

    assert start("pt-br").status_code == 201
    assert OtpSession.objects.get().locale == "pt"  # Brazilian Portuguese falls back to Portuguese
    (message,) = inbox_list(workspace=workspace, dest=DEST, now=timezone.now())
    assert message.text.startswith("Use o codigo ")
