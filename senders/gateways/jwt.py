"""The two JSON Web Tokens (RFC 7519, compact JWS of RFC 7515) the Vonage Voice backend needs, over
`cryptography` (already a dependency) and the standard library rather than PyJWT: signing RS256 with the
application's private key (the call's `Authorization`), and checking HS256 with the signature secret (the
signed event webhooks). Two small functions do not justify a new dependency and its lock; they accept
nothing else (no `none`, no algorithm taken from the token's own header), which is where JWT libraries
have had their bugs.
"""

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class JwtInvalid(Exception):
    """A token that is malformed, signed otherwise, or with another algorithm. Never quotes the token."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise JwtInvalid("not base64url") from None


def _segment(value: Mapping[str, Any]) -> str:
    return b64url(json.dumps(dict(value), separators=(",", ":")).encode())


def rsa_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM text (PKCS#1 or PKCS#8, unencrypted); ValueError for anything else."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key (RS256 needs one)")
    return key


def sign_rs256(claims: Mapping[str, Any], private_key_pem: str) -> str:
    """A compact RS256 JWT of `claims` (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 section 3.3)."""
    key = rsa_private_key(private_key_pem)
    signing_input = f"{_segment({'alg': 'RS256', 'typ': 'JWT'})}.{_segment(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def sign_hs256(claims: Mapping[str, Any], secret: str) -> str:
    """A compact HS256 JWT of `claims` (what Vonage sends with a signed webhook; the tests' fakes use it)."""
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(claims)}"
    digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(digest)}"


def verify_hs256(token: str, secret: str) -> dict[str, Any]:
    """The claims of an HS256 token signed with `secret`; JwtInvalid otherwise. Checks the signature only:
    the caller checks the times and whatever claims it needs."""
    parts = token.split(".")
    if len(parts) != 3 or not secret:
        raise JwtInvalid("not a compact JWS")
    header_text, claims_text, signature_text = parts
    header = _json_object(b64url_decode(header_text))
    if header.get("alg") != "HS256":
        raise JwtInvalid("not HS256")
    expected = hmac.new(secret.encode(), f"{header_text}.{claims_text}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, b64url_decode(signature_text)):
        raise JwtInvalid("bad signature")
    return _json_object(b64url_decode(claims_text))


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise JwtInvalid("not JSON") from None
    if not isinstance(value, dict):
        raise JwtInvalid("not a JSON object")
    return value
