"""Vonage Voice API: a call whose NCCO reads the code out twice (API.md section 15).

Send: `POST {base_url}/v1/calls` with `Authorization: Bearer <JWT>`, a JWT signed RS256 with the Vonage
application's private key (claims `application_id`, `iat`, `exp`, `jti`), and the JSON `{"to": [{"type":
"phone", "number": "<digits, no +>"}], "from": {"type": "phone", "number": "<the route's from>"}, "ncco":
[talk, talk], "event_url": [<the receipt URL>], "event_method": "POST"}`. 201 answers `{"uuid", "status",
"direction", "conversation_uuid"}`; an error answers `{"type", "title", "detail"}` with a 4xx or 5xx.
`OutgoingSms.text` is what the call says once (otp.templating.voice_text).

Events: Vonage POSTs JSON `{"uuid", "status", "timestamp", ...}` to the event URL. With signed callbacks
switched on for the application (Vonage's Voice "signed webhooks"), each carries `Authorization: Bearer
<JWT>` signed HS256 with the account's signature secret, whose `payload_hash` claim is the SHA-256 (hex)
of the body: the only authentication Vonage offers for these events, so a route needs `signature_secret`
and an unsigned event is refused.
"""

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from senders.gateways.base import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRejected,
    ReceiptRequest,
    TransientGatewayError,
    receipt_time,
)
from senders.gateways.jwt import JwtInvalid, rsa_private_key, sign_rs256, verify_hs256
from senders.gateways.transport import ProviderGateway, json_object, post
from zeckta.channels import Channel

DEFAULT_BASE_URL = "https://api.nexmo.com"
TOKEN_LIFETIME = 900  # seconds a call's JWT is valid; one is made per call
SIGNATURE_MAX_AGE = 300  # seconds between a signed event's `iat` and now, either way (as for Vonage SMS)
# A call's events as the contract names them (API.md section 15): under way is "sent", answered and
# ended is delivered, never reaching anyone fails for good. `machine`/`human` (answering machine
# detection) and `input`, `transfer` ... say nothing about delivery.
STATUS_MAP = {
    "started": "sent",
    "ringing": "sent",
    "answered": "sent",
    "completed": "delivered",
    "busy": "undeliverable",
    "cancelled": "undeliverable",
    "failed": "undeliverable",
    "rejected": "undeliverable",
    "timeout": "undeliverable",
    "unanswered": "undeliverable",
}

# `talk` languages per language (and region): codes from Vonage's text-to-speech list. A language with no
# voice there (Swahili, among the service's texts) is read by the en-US voice: see docs/providers.md.
TALK_LANGUAGES: dict[str, str] = {
    "en": "en-US",
    "en-US": "en-US",
    "en-GB": "en-GB",
    "en-AU": "en-AU",
    "en-IN": "en-IN",
    "en-ZA": "en-ZA",
    "fr": "fr-FR",
    "fr-CA": "fr-CA",
    "pt": "pt-BR",
    "pt-BR": "pt-BR",
    "pt-PT": "pt-PT",
    "es": "es-ES",
    "es-MX": "es-MX",
    "es-US": "es-US",
    "ar": "ar",
    "de": "de-DE",
    "it": "it-IT",
}
TALK_FALLBACK = "en-US"


def talk_language(locale: str) -> str:
    """The `talk` action's language for a BCP 47 tag: its language and region, else its language, else en-US."""
    parts = [part for part in locale.replace("_", "-").split("-") if part]
    if not parts:
        return TALK_FALLBACK
    language = parts[0].lower()
    for part in parts[1:]:
        if len(part) == 2 and f"{language}-{part.upper()}" in TALK_LANGUAGES:
            return TALK_LANGUAGES[f"{language}-{part.upper()}"]
    return TALK_LANGUAGES.get(language, TALK_FALLBACK)


def ncco(text: str, locale: str) -> list[dict[str, Any]]:
    """The call's NCCO: the text said twice in the locale's language."""
    talk = {"action": "talk", "text": text, "language": talk_language(locale)}
    return [dict(talk), dict(talk)]


class VonageVoiceGateway(ProviderGateway):
    provider = "vonage_voice"
    channel = Channel.VOICE
    required_settings = ("application_id", "private_key", "from", "signature_secret")
    # api_key: when set, a signed event must name it (the JWT's `api_key` claim); api_secret is taken so
    # that the settings of the Vonage SMS route can be reused as they are, and not used.
    optional_settings = ("api_key", "api_secret", "base_url", "timeout")
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        body: dict[str, Any] = {
            "to": [{"type": "phone", "number": message.to.lstrip("+")}],
            "from": {"type": "phone", "number": self.setting("from").lstrip("+")},
            "ncco": ncco(message.text, message.locale),
        }
        if message.receipt_url:
            body.update(event_url=[message.receipt_url], event_method="POST")
        answer = post(
            f"{self.base_url}/v1/calls",
            body=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=self.timeout,
        )
        data = json_object(answer.body)
        if 200 <= answer.status < 300:
            return GatewayResult(
                provider_message_id=str(data.get("uuid") or "")[:200], provider_status=str(data.get("status") or "")
            )
        error_code = str(answer.status)
        title = str(data.get("title") or "")[:100]
        if answer.status >= 500 or answer.status == 429:
            raise TransientGatewayError(f"vonage voice error: HTTP {answer.status} {title}", error_code=error_code)
        raise PermanentGatewayError(f"vonage refused the call: HTTP {answer.status} {title}", error_code=error_code)

    def token(self) -> str:
        """The call's JWT: RS256 with the application's private key (PermanentGatewayError if it is no key)."""
        now = int(time.time())
        claims = {
            "application_id": self.setting("application_id"),
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        try:
            return sign_rs256(claims, self.setting("private_key"))
        except ValueError as exc:
            raise PermanentGatewayError(f"the vonage_voice route's private_key: {exc}") from None

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        self._check_signature(request)
        event = json_object(request.body)
        status = STATUS_MAP.get(str(event.get("status") or ""))
        call_uuid = str(event.get("uuid") or "")
        if status is None or not call_uuid:
            return []
        return [
            Receipt(
                provider_message_id=call_uuid,
                status=status,
                provider_status=str(event["status"]),
                error_code=str(event.get("detail") or "")[:64] if status == "undeliverable" else "",
                at=receipt_time(event.get("timestamp")),
            )
        ]

    def _check_signature(self, request: ReceiptRequest) -> None:
        authorization = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            claims = verify_hs256(token, self.setting("signature_secret"))
        except JwtInvalid as exc:
            raise ReceiptRejected(f"unsigned or badly signed Vonage event: {exc}") from None
        if not _recent(claims.get("iat")):
            raise ReceiptRejected(f"signed Vonage event older or newer than {SIGNATURE_MAX_AGE}s (a replay?)")
        payload_hash = hashlib.sha256(request.body).hexdigest()
        if not hmac.compare_digest(str(claims.get("payload_hash") or "").lower().encode(), payload_hash.encode()):
            raise ReceiptRejected("the Vonage event's body is not the one its JWT signed (payload_hash)")
        for name in ("application_id", "api_key"):
            if name in claims and self.setting(name) and str(claims[name]) != self.setting(name):
                raise ReceiptRejected(f"the Vonage event was signed for another {name}")

    @classmethod
    def settings_problem(cls, values: Mapping[str, Any]) -> str | None:
        try:
            rsa_private_key(str(values.get("private_key", "")))
        except ValueError as exc:
            return f"private_key is the Vonage application's private key, PEM ({exc})"
        if not str(values.get("from", "")).lstrip("+").isdigit():
            return "from is the Vonage number the call comes from, in international digits (e.g. 447700900000)"
        return None


def _recent(iat: object) -> bool:
    try:
        return abs(time.time() - float(str(iat))) <= SIGNATURE_MAX_AGE
    except ValueError:
        return False
