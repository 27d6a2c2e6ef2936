"""Codes, their HMAC digests and the encrypted retry copy of the SMS text."""

import hashlib
import hmac
import secrets
import uuid

from cryptography.fernet import MultiFernet
from django.conf import settings

from otp.transactions import Transaction
from zeckta.crypto import fernet_for


def generate_code(length: int) -> str:
    """A uniformly random numeric code from the OS CSPRNG, zero-padded (leading zeros are valid)."""
    return str(secrets.randbelow(10**length)).zfill(length)


def code_digest(session_id: uuid.UUID, code: str, transaction: Transaction | None = None) -> str:
    """HMAC(OTP_HASH_KEY, session id + code [+ transaction]): binds the code to its session, and to the
    amount and payee it approves when there is one; the pepper lives outside the database."""
    message = f"{session_id}:{code}"
    if transaction is not None:
        message = f"{message}:{transaction.canonical()}"
    return hmac.new(settings.OTP_HASH_KEY.encode(), message.encode(), hashlib.sha256).hexdigest()


def code_matches(session_id: uuid.UUID, code: str, digest: str, transaction: Transaction | None = None) -> bool:
    return hmac.compare_digest(code_digest(session_id, code, transaction), digest)


def sms_copy_fernet() -> MultiFernet:
    return fernet_for(b"sms-retry-copy-v1", settings.SMS_ENCRYPTION_KEY, settings.SMS_ENCRYPTION_KEY_FALLBACKS)


def encrypt_text(text: str) -> bytes:
    return sms_copy_fernet().encrypt(text.encode())


def decrypt_text(token: bytes | memoryview) -> str:
    return sms_copy_fernet().decrypt(bytes(token)).decode()


# Keys of their own (zeckta.crypto): a leaked inbox key opens no retry copy, and the reverse.
_TEST_INBOX = b"test-inbox-v1"
_REVIEWER_CODE = b"reviewer-code-v1"


def inbox_fernet() -> MultiFernet:
    return fernet_for(_TEST_INBOX)


def reviewer_code_fernet() -> MultiFernet:
    return fernet_for(_REVIEWER_CODE)


def encrypt_inbox_text(text: str) -> bytes:
    """A test-mode SMS, kept for the test inbox (API.md section 10)."""
    return inbox_fernet().encrypt(text.encode())


def decrypt_inbox_text(token: bytes | memoryview) -> str:
    return inbox_fernet().decrypt(bytes(token)).decode()


def encrypt_reviewer_code(code: str) -> bytes:
    """A reviewer number's fixed code: the only code the service keeps in a reversible form."""
    return reviewer_code_fernet().encrypt(code.encode())


def decrypt_reviewer_code(token: bytes | memoryview) -> str:
    return reviewer_code_fernet().decrypt(bytes(token)).decode()
