"""Vonage (Nexmo) SMS API: `POST {base_url}/sms/json`, delivery receipts signed with the signature secret.

Send: form-encoded `api_key`, `api_secret`, `from`, `to` (international digits, no `+`), `text`,
`type=unicode` for UCS-2 text, `callback` (the receipt URL) and `client-ref` (our reference). The answer
is 200 with `{"message-count", "messages": [{"message-id", "status", "error-text"}]}`: status "0" is
accepted, "1" (throttled) and "5" (internal error) are worth retrying, any other is final.
Receipts: the parameters `messageId`, `status`, `err-code` ... with `sig`, Vonage's signature over every
other parameter (`&name=value` sorted by name, `&` and `=` in values replaced by `_`): an MD5 hash with
the secret appended (Vonage's default), or an HMAC keyed with it (`signature_method` md5, sha1, sha256,
sha512), as chosen in the Vonage dashboard.
"""

import hashlib
import hmac
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

DEFAULT_BASE_URL = "https://rest.nexmo.com"
TRANSIENT_STATUSES = frozenset({"1", "5"})  # throttled, internal error
STATUS_MAP = {"delivered": "delivered", "expired": "expired", "failed": "undeliverable", "rejected": "rejected",
              "accepted": "sent"}
HMAC_METHODS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


class VonageGateway(ProviderGateway):
    provider = "vonage"
    required_settings = ("api_key", "api_secret")
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        form = {"api_key": self.setting('api_key'), "api_secret": self.setting('api_secret'), "from": message.src,
                "to": message.to.lstrip("+"), "text": message.text, "client-ref": message.reference[:100]}
        if count_segments(message.text).encoding == "UCS-2":
            form["type"] = "unicode"
        if message.receipt_url:
            form["callback"] = message.receipt_url
        answer = post(f"{self.base_url}/sms/json", body=urlencode(form).encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                      timeout=self.timeout)
        if answer.status >= 500 or answer.status == 429:
            raise TransientGatewayError(f"vonage error: HTTP {answer.status}", error_code=str(answer.status))
        if answer.status >= 300:
            raise PermanentGatewayError(f"vonage refused the request: HTTP {answer.status}",
                                        error_code=str(answer.status))
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
        if not hmac.compare_digest(given, expected):
            raise ReceiptRejected("bad Vonage signature")
        status = STATUS_MAP.get(str(params.get("status") or ""))
        message_id = str(params.get("messageId") or "")
        if status is None or not message_id:
            return []
        return [Receipt(provider_message_id=message_id, status=status, provider_status=str(params["status"]),
                        error_code=str(params.get("err-code") or ""))]


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

