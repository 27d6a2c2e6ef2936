"""Keys for data the service keeps encrypted at rest: each purpose its own Fernet key.

Derived (HKDF-SHA256) from the two secrets every deployment sets, SECRET_KEY and OTP_HASH_KEY, so there is
no third secret to forget; a purpose's own setting, when set, is used instead.
"""

import base64
from functools import lru_cache

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@lru_cache(maxsize=16)
def _fernet(purpose: bytes, explicit_key: str, secret_key: str, hash_key: str) -> Fernet:
    if explicit_key:
        return Fernet(explicit_key.encode())
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"zeckta-otp", info=purpose)
    return Fernet(base64.urlsafe_b64encode(hkdf.derive(f"{secret_key}\x00{hash_key}".encode())))


def fernet_for(purpose: bytes, explicit_key: str = "") -> Fernet:
    """The Fernet key of `purpose` (b"sms-retry-copy-v1", b"route-settings-v1"), or `explicit_key`."""
    return _fernet(purpose, explicit_key, settings.SECRET_KEY, settings.OTP_HASH_KEY)
