"""Signing secrets and Standard Webhooks signatures.

A secret is `whsec_` + the base64 of 32 random bytes; the HMAC key is those bytes. It is kept encrypted
with the Fernet key of its own purpose, and signing uses the `standardwebhooks` library, so what we send
is what receivers verify with that same library.
"""

import base64
import secrets
from datetime import UTC, datetime

from cryptography.fernet import MultiFernet
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from zeckta.crypto import fernet_for

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32  # 256 bits, the HMAC-SHA256 block's worth; Standard Webhooks asks for 24 to 64
DISPLAY_CHARACTERS = 4  # of the base64 shown after `whsec_` in the admin (24 of 256 bits)

_PURPOSE = b"webhook-secret-v1"


def secret_new() -> str:
    """A new raw secret. Shown to the workspace once; only its encryption is stored."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_prefix(secret: str) -> str:
    return secret[: len(SECRET_PREFIX) + DISPLAY_CHARACTERS]


def secret_encrypt(secret: str) -> bytes:
    return secret_fernet().encrypt(secret.encode())


def secret_decrypt(encrypted: bytes) -> str:
    """Raises cryptography's InvalidToken when the key changed since the secret was stored."""
    return secret_fernet().decrypt(bytes(encrypted)).decode()


def secret_fernet() -> MultiFernet:
    return fernet_for(_PURPOSE, settings.WEBHOOK_ENCRYPTION_KEY, settings.WEBHOOK_ENCRYPTION_KEY_FALLBACKS)


def signature_header(*, secrets_: list[str], webhook_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64>` per secret, space-separated: during a rotation's overlap both secrets sign, and a
    receiver that knows either one accepts the message."""
    at = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(Webhook(secret).sign(msg_id=webhook_id, timestamp=at, data=body) for secret in secrets_)
