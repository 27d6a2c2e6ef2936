"""Rotating secrets (docs/operations.md, Secrets): with the old value among the fallbacks, everything stored
encrypted before the rotation stays readable; `manage.py reencrypt_secrets` moves it under the new key, after
which the fallback can go. Rotating OTP_HASH_KEY leaves the codes of pending sessions unverifiable."""

import pytest
from cryptography.fernet import Fernet, InvalidToken

from otp.crypto import decrypt_reviewer_code, decrypt_text
from otp.models import ReviewerNumber, SmsMessage
from otp.testmode import reviewer_number_add
from otp.tests.helpers import deliver_and_read_code, later, new_session, resend, verify
from senders.models import Route
from senders.routes import route_create, route_settings
from webhooks.models import WebhookEndpoint
from webhooks.signing import secret_decrypt
from webhooks.tests.factories import endpoint_for
from zeckta.testing import run_command

pytestmark = pytest.mark.django_db

ROUTE_VALUES = {"url": "https://sms.example.com/send", "token": "route-token"}
REVIEWER_DEST = "+233202007799"
NEW_SECRET_KEY = "a-new-secret-key-after-the-rotation-0123456789"


@pytest.fixture
def stored(api, workspace, settings):
    """One of each thing kept encrypted, written under the keys in force before the rotation."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.example.com"]
    route = route_create(name="nigeria", backend="http", values=ROUTE_VALUES, countries="NG")  # not used here
    endpoint = endpoint_for(workspace, "https://hooks.example.com/zeckta")
    new_session(api)
    reviewer_number_add(workspace=workspace, dest=REVIEWER_DEST, code="424242", actor="staff")
    return {"route": route, "secret": endpoint.secret, "text": decrypt_text(SmsMessage.objects.get().encrypted_text)}


def assert_all_readable(stored) -> None:
    assert route_settings(Route.objects.get(pk=stored["route"].pk)) == ROUTE_VALUES
    assert secret_decrypt(WebhookEndpoint.objects.get().encrypted_secret) == stored["secret"]
    assert decrypt_text(SmsMessage.objects.get().encrypted_text) == stored["text"]
    assert decrypt_reviewer_code(ReviewerNumber.objects.get().encrypted_code) == "424242"


def test_after_a_secret_key_rotation_what_was_stored_stays_readable_through_the_fallback(stored, settings):
    old = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_SECRET_KEY, [old]

    assert_all_readable(stored)

    settings.SECRET_KEY_FALLBACKS = []  # the old key dropped too early: nothing of it can be read
    assert route_settings(Route.objects.get()) == {}  # logged; its sends fail over
    with pytest.raises(InvalidToken):
        decrypt_text(SmsMessage.objects.get().encrypted_text)


def test_reencrypt_secrets_moves_everything_under_the_new_key_so_the_fallback_can_go(stored, settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_SECRET_KEY, [settings.SECRET_KEY]

    lines = run_command("reencrypt_secrets")

    assert lines[-1] == "reencrypted 4, unreadable 0"  # route, webhook secret, SMS copy, reviewer code
    assert "route credentials: 1 re-encrypted, 0 unreadable" in lines
    settings.SECRET_KEY_FALLBACKS = []
    assert_all_readable(stored)


def test_a_value_under_a_key_no_longer_configured_is_counted_and_left_alone(stored, settings):
    lost = Fernet(Fernet.generate_key()).encrypt(b"written under a key nobody has any more")
    ReviewerNumber.objects.update(encrypted_code=lost)

    lines = run_command("reencrypt_secrets")

    assert lines[-1] == "reencrypted 3, unreadable 1"
    assert bytes(ReviewerNumber.objects.get().encrypted_code) == lost


def test_an_explicit_key_rotates_through_its_own_fallbacks_and_the_derived_key_stays_readable(api, settings):
    new_session(api)  # encrypted under the key derived from SECRET_KEY and OTP_HASH_KEY
    derived = SmsMessage.objects.get()
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SMS_ENCRYPTION_KEY = first  # moving to an explicit key: what the derived one wrote still reads
    assert decrypt_text(derived.encrypted_text)
    new_session(api, "+233202007746")
    under_first = SmsMessage.objects.get(to="+233202007746")
    text = Fernet(first.encode()).decrypt(bytes(under_first.encrypted_text)).decode()  # the explicit key wrote it

    settings.SMS_ENCRYPTION_KEY, settings.SMS_ENCRYPTION_KEY_FALLBACKS = second, [first]

    assert decrypt_text(under_first.encrypted_text) == text
    settings.SMS_ENCRYPTION_KEY_FALLBACKS = []
    with pytest.raises(InvalidToken):
        decrypt_text(under_first.encrypted_text)


def test_rotating_otp_hash_key_leaves_pending_codes_unverifiable_until_resent(api, stored, settings):
    session_id = SmsMessage.objects.get().session.public_id
    code = deliver_and_read_code(str(session_id))
    settings.OTP_HASH_KEY, settings.OTP_HASH_KEY_FALLBACKS = (
        "a-new-pepper-after-the-rotation-0123456789",
        [settings.OTP_HASH_KEY],
    )

    # The stored digest was made with the old pepper: the right code no longer matches (and costs an attempt).
    assert verify(api, str(session_id), code).json()["data"]["status"] == "INVALID"
    # What was encrypted under keys derived from the old pepper is still readable through its fallback.
    assert route_settings(Route.objects.get()) == ROUTE_VALUES

    with later(31):  # past the first resend's cool-down: a new code, hashed with the new pepper
        assert resend(api, str(session_id)).status_code == 200
        new_code = deliver_and_read_code(str(session_id))
        assert verify(api, str(session_id), new_code).json()["data"]["status"] == "APPROVED"
