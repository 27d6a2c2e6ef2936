"""Codes, their HMAC digests and the encrypted retry copy of the SMS text."""

import hashlib
import hmac
import secrets
import uuid

from cryptography.fernet import Fernet
from django.conf import settings

from zeckta.crypto import fernet_for


def generate_code(length: int) -> str:
    """A uniformly random numeric code from the OS CSPRNG, zero-padded (leading zeros are valid)."""
    return str(secrets.randbelow(10**length)).zfill(length)


def code_digest(session_id: uuid.UUID, code: str) -> str:
    """HMAC(OTP_HASH_KEY, session id + code): binds the code to its session; the pepper lives outside the DB."""
    message = f"{session_id}:{code}".encode()
    return hmac.new(settings.OTP_HASH_KEY.encode(), message, hashlib.sha256).hexdigest()


def code_matches(session_id: uuid.UUID, code: str, digest: str) -> bool:
    return hmac.compare_digest(code_digest(session_id, code), digest)


def _current_fernet() -> Fernet:
    return fernet_for(b"sms-retry-copy-v1", settings.SMS_ENCRYPTION_KEY)


def encrypt_text(text: str) -> bytes:
    return _current_fernet().encrypt(text.encode())


def decrypt_text(token: bytes | memoryview) -> str:
    return _current_fernet().decrypt(bytes(token)).decode()
