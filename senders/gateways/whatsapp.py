"""WhatsApp Business Cloud API (Meta): an approved authentication template with a copy-code button, its
status webhook and the webhook's verification handshake (API.md section 15).

Send: `POST {base_url}/{version}/{phone_number_id}/messages`, `Authorization: Bearer {access_token}`, JSON
`{"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+E.164", "type": "template",
"template": {"name", "language": {"code"}, "components": [body parameter = the code, url button 0
parameter = the code]}}`. `to` keeps its `+`, as Meta recommends. 200 answers `{"messages": [{"id":
"wamid..."}]}`; an error answers `{"error": {"code", "message", ...}}` with a 4xx or 5xx.
`OutgoingSms.text` is the code itself for this channel (the template holds the words).

Statuses: Meta POSTs `{"entry": [{"changes": [{"value": {"metadata": {"phone_number_id"}, "statuses":
[{"id", "status", "timestamp", "errors"}]}}]}]}` to the webhook, signed `X-Hub-Signature-256:
sha256=<hex HMAC-SHA256 of the raw body with the app secret>`. Before that, Meta checks the URL with a
`GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...` that must answer the challenge.
"""

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from senders.gateways.base import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRejected,
    ReceiptRequest,
    TransientGatewayError,
    receipt_unix_time,
)
from senders.gateways.transport import ProviderGateway, json_object, post
from zeckta.channels import Channel

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_VERSION = "v23.0"  # the Graph API version; Meta keeps each for about two years
VERSION_PATTERN = re.compile(r"v\d+\.\d+")
# Meta's statuses as the contract names them. `read` implies delivered; `failed` is final (API.md section
# 15: "WhatsApp status failed" fails for good, and the fallback moves to the next channel).
STATUS_MAP = {"sent": "sent", "delivered": "delivered", "read": "delivered", "failed": "undeliverable"}
# Meta's error codes that are about the moment, not the message: throttling (4 application request limit,
# 80007 account rate limit, 130429 throughput, 131056 pair rate limit) and Meta's own trouble (131000
# something went wrong, 131016 service unavailable, 133004 server temporarily unavailable).
TRANSIENT_CODES = frozenset({4, 80007, 130429, 131056, 131000, 131016, 133004})
# The challenge Meta sends is a number; anything much longer is not Meta's and is not echoed back.
CHALLENGE_MAX_CHARS = 128

# The template language codes Meta supports (its "Supported languages" list), for mapping a BCP 47 tag:
# a language alone (`fr`) or a language with a region (`pt_BR`). Where Meta has only regional variants of
# a language, the first listed stands for it (`pt` -> pt_BR, `zh` -> zh_CN).
META_LANGUAGES: tuple[str, ...] = (
    "af", "sq", "ar", "az", "bn", "bg", "ca", "zh_CN", "zh_HK", "zh_TW", "hr", "cs", "da", "nl", "en",
    "en_GB", "en_US", "et", "fil", "fi", "fr", "ka", "de", "el", "gu", "ha", "he", "hi", "hu", "id", "ga",
    "it", "ja", "kn", "kk", "rw_RW", "ko", "ky_KG", "lo", "lv", "lt", "mk", "ms", "ml", "mr", "nb", "fa",
    "pl", "pt_BR", "pt_PT", "pa", "ro", "ru", "sr", "sk", "sl", "es", "es_AR", "es_ES", "es_MX", "sw", "sv",
    "ta", "te", "th", "tr", "uk", "ur", "uz", "vi", "zu",
)  # fmt: skip


def template_language(locale: str, available: Iterable[str] = META_LANGUAGES, default: str = "en") -> str:
    """Meta's template language code for a BCP 47 tag: the same language and region (`pt-BR` -> pt_BR),
    else the language alone (`fr-CA` -> fr), else the first regional variant of the language (`pt` ->
    pt_BR), else `default`. `available`: the codes to choose from (the route's `template_languages`, the
    languages its template was approved in, else every code Meta supports)."""
    codes = list(available)
    parts = [part for part in locale.replace("_", "-").split("-") if part]
    language = parts[0].lower() if parts else ""
    regions = [part.upper() for part in parts[1:] if len(part) == 2 and part.isalpha()]
    by_lower = {code.lower(): code for code in codes}
    for region in regions:
        if f"{language}_{region}".lower() in by_lower:
            return by_lower[f"{language}_{region}".lower()]
    if language in by_lower:
        return by_lower[language]
    for code in codes:
        if code.lower().startswith(f"{language}_"):
            return code
    return default


class WhatsAppGateway(ProviderGateway):
    provider = "whatsapp"
    channel = Channel.WHATSAPP
    # app_secret and verify_token: without them no status can be authenticated and Meta cannot subscribe.
    required_settings = ("phone_number_id", "access_token", "template_name", "app_secret", "verify_token")
    optional_settings = ("template_languages", "version", "base_url", "timeout")
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        code = message.text  # this channel's text is the code itself: the template holds the words
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to if message.to.startswith("+") else f"+{message.to}",
            "type": "template",
            "template": {
                "name": self.setting("template_name"),
                "language": {"code": self.language(message.locale)},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": code}]},
                    {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": code}]},
                ],
            },
        }
        answer = post(
            f"{self.base_url}/{self.version}/{self.setting('phone_number_id')}/messages",
            body=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.setting('access_token')}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=self.timeout,
        )
        data = json_object(answer.body)
        if 200 <= answer.status < 300:
            messages = data.get("messages")
            first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
            message_id = str(first.get("id") or "")[:200]
            if not message_id:
                raise TransientGatewayError("whatsapp answered without a message id", error_code=str(answer.status))
            return GatewayResult(provider_message_id=message_id, provider_status=str(first.get("message_status") or ""))
        error = _dict(data.get("error"))
        code_number = _int(error.get("code"))
        error_code = str(code_number if code_number is not None else answer.status)
        if answer.status >= 500 or answer.status == 429 or code_number in TRANSIENT_CODES:
            raise TransientGatewayError(
                f"whatsapp error: HTTP {answer.status}, code {error_code}", error_code=error_code
            )
        raise PermanentGatewayError(
            f"whatsapp refused the message: HTTP {answer.status}, code {error_code}", error_code=error_code
        )

    @property
    def version(self) -> str:
        return self.setting("version") or DEFAULT_VERSION

    def language(self, locale: str) -> str:
        """The template's language code for the session's locale (the route's `template_languages`, if
        set, name the languages the template was approved in; the first is the default)."""
        approved = _split(self.setting("template_languages"))
        if approved:
            return template_language(locale, approved, default=approved[0])
        return template_language(locale)

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        given = _header(request.headers, "X-Hub-Signature-256").encode()
        digest = hmac.new(self.setting("app_secret").encode(), request.body, hashlib.sha256).hexdigest()
        # Bytes: compare_digest refuses a str with non-ASCII characters (TypeError, a 500).
        if not given or not hmac.compare_digest(given, f"sha256={digest}".encode()):
            raise ReceiptRejected("bad or missing X-Hub-Signature-256")
        receipts = []
        for value in _change_values(json_object(request.body)):
            metadata = _dict(value.get("metadata"))
            number_id = str(metadata.get("phone_number_id") or "")
            if number_id and number_id != self.setting("phone_number_id"):
                # One Meta app may post every number's statuses to one URL: another route's are not ours.
                continue
            statuses = _list(value.get("statuses"))
            for status in statuses:
                receipt = _receipt(status)
                if receipt is not None:
                    receipts.append(receipt)
        return receipts

    def answer_handshake(self, request: ReceiptRequest) -> str | None:
        mode = request.query.get("hub.mode", "")
        given = request.query.get("hub.verify_token", "").encode()
        challenge = request.query.get("hub.challenge", "")
        expected = self.setting("verify_token").encode()
        if mode != "subscribe" or not hmac.compare_digest(given, expected):
            raise ReceiptRejected("webhook verification with a wrong hub.mode or hub.verify_token")
        if not challenge or len(challenge) > CHALLENGE_MAX_CHARS:
            raise ReceiptRejected("webhook verification without a hub.challenge Meta would send")
        return challenge

    @classmethod
    def settings_problem(cls, values: Mapping[str, Any]) -> str | None:
        if not str(values.get("phone_number_id", "")).isdigit():
            return "phone_number_id is the WhatsApp phone number's id (digits), not the number itself"
        version = str(values.get("version") or DEFAULT_VERSION)
        if not VERSION_PATTERN.fullmatch(version):
            return f"version is a Graph API version such as {DEFAULT_VERSION}"
        unknown = [code for code in _split(str(values.get("template_languages") or "")) if code not in META_LANGUAGES]
        if unknown:
            return f"template_languages names codes Meta does not support: {', '.join(unknown)}"
        return None

    @classmethod
    def receipt_url_problem(cls, url: str) -> str | None:
        if not url.startswith("https://"):
            return "Meta calls a webhook over HTTPS only: PUBLIC_URL must start with https://"
        return None


def _receipt(status: object) -> Receipt | None:
    if not isinstance(status, dict):
        return None
    provider_status = str(status.get("status") or "")
    mapped = STATUS_MAP.get(provider_status)
    message_id = str(status.get("id") or "")
    if mapped is None or not message_id:
        return None
    errors = _list(status.get("errors"))
    first_error = errors[0] if errors and isinstance(errors[0], dict) else {}
    return Receipt(
        provider_message_id=message_id,
        status=mapped,
        provider_status=provider_status,
        error_code=str(first_error.get("code") or ""),
        at=receipt_unix_time(status.get("timestamp")),
    )


def _change_values(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every `entry[].changes[].value` object of a webhook body (anything else in it is skipped)."""
    values = []
    entries = _list(data.get("entry"))
    for entry in entries:
        changes = _list(entry.get("changes")) if isinstance(entry, dict) else []
        for change in changes:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                values.append(change["value"])
    return values


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None
