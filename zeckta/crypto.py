"""Keys for data the service keeps encrypted at rest: each purpose its own Fernet key, with fallbacks.

Derived (HKDF-SHA256) from the two secrets every deployment sets, SECRET_KEY and OTP_HASH_KEY, so there is
no third secret to forget; a purpose's own setting, when set, is used instead.

Rotation: every purpose is a MultiFernet. It encrypts with its first key and decrypts with any of them:
the purpose's own key (or, without one, the key derived from the current secrets), then the purpose's
`*_FALLBACKS` keys, then the keys derived from every pair of current and previous secrets
(SECRET_KEY_FALLBACKS, OTP_HASH_KEY_FALLBACKS). So data written before a rotation stays readable while the
old key is listed, and `manage.py reencrypt_secrets` rewrites it under the new one (docs/operations.md).
"""

import base64
from collections.abc import Iterable
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db.models import QuerySet


def _derived_key(purpose: bytes, secret_key: str, hash_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"zeckta-otp", info=purpose)
    return base64.urlsafe_b64encode(hkdf.derive(f"{secret_key}\x00{hash_key}".encode()))


@lru_cache(maxsize=32)
def _fernet(
    purpose: bytes,
    explicit_key: str,
    explicit_fallbacks: tuple[str, ...],
    secret_keys: tuple[str, ...],
    hash_keys: tuple[str, ...],
) -> MultiFernet:
    keys = [explicit_key.encode()] if explicit_key else []
    keys += [key.encode() for key in explicit_fallbacks if key]
    # The current pair first: without an explicit key, it is the one that encrypts.
    keys += [_derived_key(purpose, secret, pepper) for pepper in hash_keys for secret in secret_keys]
    return MultiFernet([Fernet(key) for key in dict.fromkeys(keys)])


def fernet_for(purpose: bytes, explicit_key: str = "", fallback_keys: Iterable[str] = ()) -> MultiFernet:
    """The keys of `purpose` (b"sms-retry-copy-v1", b"route-settings-v1"): encrypts with `explicit_key` or,
    without one, the key derived from the current secrets; decrypts with that, `fallback_keys`, and the keys
    derived from the current and previous secrets."""
    return _fernet(
        purpose,
        explicit_key,
        tuple(fallback_keys),
        (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS),
        (settings.OTP_HASH_KEY, *settings.OTP_HASH_KEY_FALLBACKS),
    )


def reencrypt_column(rows: QuerySet, field: str, fernet: MultiFernet) -> tuple[int, int]:
    """Rewrites `field` of every row under `fernet`'s first key; returns (rewritten, unreadable).

    Each row is rewritten by one conditional UPDATE on its old value: a row changed meanwhile (a secret
    rotated, a route saved) keeps its newer value. An unreadable value (its key is no longer listed) is
    left as it is and counted.
    """
    rewritten = unreadable = 0
    pending = rows.exclude(**{f"{field}__isnull": True}).values_list("pk", field)
    for pk, token in pending.iterator(chunk_size=500):
        try:
            new_token = fernet.rotate(bytes(token))
        except InvalidToken:
            unreadable += 1
            continue
        rewritten += rows.model.objects.filter(pk=pk, **{field: token}).update(**{field: new_token})
    return rewritten, unreadable
