"""Vonage (Nexmo) SMS API: `POST {base_url}/sms/json`, delivery receipts signed with the signature secret.

Send: form-encoded `api_key`, `api_secret`, `from`, `to` (international digits, no `+`), `text`,
`type=unicode` for UCS-2 text, `callback` (the receipt URL) and `client-ref` (our reference). The answer
is 200 with `{"message-count", "messages": [{"message-id", "status", "error-text"}]}`: status "0" is
accepted, "1" (throttled) and "5" (internal error) are worth retrying, any other is final.
Receipts: the parameters `messageId`, `status`, `err-code` ... with `sig`, Vonage's signature over every
other parameter (`&name=value` sorted by name, `&` and `=` in values replaced by `_`): an MD5 hash with
the secret appended (Vonage's default), or an HMAC keyed with it (`signature_method` md5, sha1, sha256,
sha512), as chosen in the Vonage dashboard. Signed receipts carry `timestamp` (unix seconds): one more
than SIGNATURE_MAX_AGE from now is refused, so a captured receipt cannot be replayed later.

Vonage takes a `callback` of at most CALLBACK_MAX_CHARS characters and refuses a longer one with status 23
(Invalid Callback Url), which would fail every SMS over to the next route: such a route is refused when it
is configured (`route_receipt_url_problem`), and a send whose URL grew too long since (a new PUBLIC_URL)
goes without it.
"""

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from senders.gateways.base import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRejected,
    ReceiptRequest,
    TransientGatewayError,
)
from senders.gateways.transport import ProviderGateway, json_object, post
from zeckta.sms_text import count_segments

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://rest.nexmo.com"
TRANSIENT_STATUSES = frozenset({"1", "5"})  # throttled, internal error
STATUS_MAP = {
    "delivered": "delivered",
    "expired": "expired",
    "failed": "undeliverable",
    "rejected": "rejected",
    "accepted": "sent",
}
CALLBACK_MAX_CHARS = 100  # Vonage's limit on `callback`
SIGNATURE_MAX_AGE = 300  # seconds between a signed receipt's `timestamp` and now, either way
HMAC_METHODS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


class VonageGateway(ProviderGateway):
    provider = "vonage"
    # signature_secret: without it no receipt can be authenticated, so a route is refused without one.
    required_settings = ("api_key", "api_secret", "signature_secret")
    optional_settings = ("signature_method", "base_url", "timeout")
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        form = {
            "api_key": self.setting("api_key"),
            "api_secret": self.setting("api_secret"),
            "from": message.src,
            "to": message.to.lstrip("+"),
            "text": message.text,
            "client-ref": message.reference[:100],
        }
        if count_segments(message.text).encoding == "UCS-2":
            form["type"] = "unicode"
        if message.receipt_url and self.receipt_url_problem(message.receipt_url) is None:
            form["callback"] = message.receipt_url
        elif message.receipt_url:
            # Sent without receipts rather than refused (status 23) on every SMS: `check --deploy` says why.
            logger.error(
                "vonage: the receipt URL is %s characters, over Vonage's %s: sent without callback",
                len(message.receipt_url),
                CALLBACK_MAX_CHARS,
            )
        answer = post(
            f"{self.base_url}/sms/json",
            body=urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            timeout=self.timeout,
        )
        if answer.status >= 500 or answer.status == 429:
            raise TransientGatewayError(f"vonage error: HTTP {answer.status}", error_code=str(answer.status))
        if answer.status >= 300:
            raise PermanentGatewayError(
                f"vonage refused the request: HTTP {answer.status}", error_code=str(answer.status)
            )
        messages = json_object(answer.body).get("messages") or [{}]
        first = messages[0] if isinstance(messages[0], dict) else {}
        status = str(first.get("status", ""))
        if status == "0":
            # A long text goes as several parts, each with its id and receipt: the first one stands for it.
            return GatewayResult(provider_message_id=str(first.get("message-id") or "")[:200], provider_status="0")
        error = f"vonage status {status}: {str(first.get('error-text') or '')[:200]}"
        if status in TRANSIENT_STATUSES:
            raise TransientGatewayError(error, error_code=status, provider_status=status)
        raise PermanentGatewayError(error, error_code=status, provider_status=status)

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        params = _receipt_params(request)
        secret = str(self.config.get("signature_secret") or "")
        given = str(params.get("sig") or "").lower()
        if not secret or not given:
            raise ReceiptRejected("unsigned receipt, or no signature_secret on the route")
        unsigned = {name: value for name, value in params.items() if name != "sig"}
        expected = signature(secret, unsigned, method=str(self.config.get("signature_method") or "md5hash"))
        # Bytes: compare_digest refuses a str with non-ASCII characters (TypeError, a 500).
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ReceiptRejected("bad Vonage signature")
        if not _recent(params.get("timestamp")):
            raise ReceiptRejected(f"signed Vonage receipt older or newer than {SIGNATURE_MAX_AGE}s (a replay?)")
        status = STATUS_MAP.get(str(params.get("status") or ""))
        message_id = str(params.get("messageId") or "")
        if status is None or not message_id:
            return []
        return [
            Receipt(
                provider_message_id=message_id,
                status=status,
                provider_status=str(params["status"]),
                error_code=str(params.get("err-code") or ""),
            )
        ]

    @classmethod
    def receipt_url_problem(cls, url: str) -> str | None:
        if len(url) > CALLBACK_MAX_CHARS:
            limit = CALLBACK_MAX_CHARS
            return f"the receipt URL is {len(url)} characters; Vonage refuses a callback over {limit} (status 23)"
        return None


def _recent(timestamp: object) -> bool:
    """Whether a signed receipt's `timestamp` (unix seconds, signed with it) is within SIGNATURE_MAX_AGE."""
    try:
        return abs(time.time() - int(str(timestamp))) <= SIGNATURE_MAX_AGE
    except ValueError:
        return False


def signature(secret: str, params: Mapping[str, Any], *, method: str = "md5hash") -> str:
    """Vonage's signature of request parameters (without `sig`), lowercase hex."""
    # MD5 with the secret appended is Vonage's default method, not ours to choose; the HMAC ones are better.
    hmac_method = HMAC_METHODS.get(method)
    digest = hmac.new(secret.encode(), digestmod=hmac_method) if hmac_method else hashlib.md5()  # noqa: S324
    for name in sorted(params):
        value = str(params[name]).replace("&", "_").replace("=", "_")
        digest.update(f"&{name}={value}".encode())
    if hmac_method is None:
        digest.update(secret.encode())
    return digest.hexdigest().lower()


def _receipt_params(request: ReceiptRequest) -> dict[str, Any]:
    """Vonage posts its receipt as a form or as JSON (a dashboard setting), or sends it as a query."""
    if request.form:
        return dict(request.form)
    if request.content_type == "application/json":
        data = json_object(request.body)
        if data:
            return data
    return dict(request.query)
