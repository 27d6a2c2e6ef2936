"""What a Zeckta API key looks like. The raw key is shown once; only `key_digest()` of it is stored.

The twin of `otp.crypto`, which owns the OTP code's format: every module that makes, stores, looks up or
audits a key takes its shape from here.
"""

import hashlib
import secrets

PREFIX = "zk_live_"
# Test mode (API.md section 10): the same API, but nothing reaches a provider and nothing is charged. The
# same length as PREFIX, so a display prefix and a lookup look alike for both.
TEST_PREFIX = "zk_test_"
PREFIXES = (PREFIX, TEST_PREFIX)
SECRET_BYTES = 32  # 256 random bits, base64url-encoded to 43 characters
# Characters of the secret kept after PREFIX in ApiKey.prefix: shown in lists and used to find the key
# (8 base64url characters: 48 bits, so a collision at issue is drawn again, never served).
LOOKUP_CHARS = 8
DISPLAY_PREFIX_LENGTH = len(PREFIX) + LOOKUP_CHARS
# Longer input is refused before hashing: no real key comes near it (characters).
MAX_LENGTH = 100
EXPIRES_IN_DAYS_MAX = 3650  # about ten years: a key meant to last longer should not expire at all


def key_generate(*, test: bool = False) -> str:
    return (TEST_PREFIX if test else PREFIX) + secrets.token_urlsafe(SECRET_BYTES)


def key_digest(raw_key: str) -> str:
    # A key carries 256 random bits, so a fast hash is enough; a password hasher would cost ~250 ms.
    return hashlib.sha256(raw_key.encode()).hexdigest()


def key_prefix(raw_key: str) -> str:
    """The display and lookup prefix of a raw key: its PREFIX (or TEST_PREFIX) plus the first LOOKUP_CHARS of its
    secret."""
    return raw_key[:DISPLAY_PREFIX_LENGTH]


def looks_like_raw_key(value: str) -> bool:
    """True for anything shaped like a raw key (longer than a display prefix): such text is never stored."""
    return value.startswith(PREFIXES) and len(value) > DISPLAY_PREFIX_LENGTH


def could_be_key(value: str) -> bool:
    """Cheap checks before any lookup: the prefix, and a length no real key exceeds."""
    return value.startswith(PREFIXES) and len(value) <= MAX_LENGTH
