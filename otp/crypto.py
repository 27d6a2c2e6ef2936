"""Codes, their HMAC digests and the encrypted retry copy of the SMS text."""

import base64
import hashlib
import hmac
import secrets
import uuid
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


def generate_code(length: int) -> str:
    """A uniformly random numeric code from the OS CSPRNG, zero-padded (leading zeros are valid)."""
    return str(secrets.randbelow(10**length)).zfill(length)


def code_digest(session_id: uuid.UUID, code: str) -> str:
    """HMAC(OTP_HASH_KEY, session id + code): binds the code to its session; the pepper lives outside the DB."""
    message = f"{session_id}:{code}".encode()
    return hmac.new(settings.OTP_HASH_KEY.encode(), message, hashlib.sha256).hexdigest()


def code_matches(session_id: uuid.UUID, code: str, digest: str) -> bool:
    return hmac.compare_digest(code_digest(session_id, code), digest)


@lru_cache(maxsize=4)
def _fernet(explicit_key: str, secret_key: str, hash_key: str) -> Fernet:
    if explicit_key:
        return Fernet(explicit_key.encode())
    # Derived from the two secrets every deployment sets, so there is no third one to forget.
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"zeckta-otp", info=b"sms-retry-copy-v1")
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(f"{secret_key}\x00{hash_key}".encode())))


def _current_fernet() -> Fernet:
    return _fernet(settings.SMS_ENCRYPTION_KEY, settings.SECRET_KEY, settings.OTP_HASH_KEY)


def encrypt_text(text: str) -> bytes:
    return _current_fernet().encrypt(text.encode())


def decrypt_text(token: bytes | memoryview) -> str:
    return _current_fernet().decrypt(bytes(token)).decode()
