"""Twilio Programmable Messaging: the Messages resource, status callbacks and `X-Twilio-Signature`.

Send: `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `Body`, `From`
(or `MessagingServiceSid`) and `StatusCallback`, HTTP Basic auth with the Account SID and Auth Token.
201 answers the message resource (`sid`, `status`); an error answers `{"code", "message", "status"}`.
Receipts: Twilio POSTs the form `MessageSid`, `MessageStatus`, `ErrorCode` to the StatusCallback, signed
with HMAC-SHA1(Auth Token, URL + each POST parameter's name and value, sorted by name), base64.

The signature check is written here rather than taken from Twilio's SDK: it is a few lines over the
standard library, and the SDK would bring its own HTTP stack for nothing else.
"""

import base64
import hashlib
import hmac
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

DEFAULT_BASE_URL = "https://api.twilio.com"
# Twilio's message statuses as the contract names them; queued/sending/accepted/scheduled say nothing new.
STATUS_MAP = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undeliverable",
    "failed": "rejected",
    "canceled": "rejected",
}
# 429 is Twilio's "Too Many Requests": the account's rate, not the message, is the problem.
TRANSIENT_STATUSES = frozenset({429})


class TwilioGateway(ProviderGateway):
    provider = "twilio"
    required_settings = ("account_sid", "auth_token")
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        form = {"To": message.to, "Body": message.text}
        service = self.config.get("messaging_service_sid")
        if service:
            form["MessagingServiceSid"] = str(service)
        else:
            form["From"] = message.src
        if message.receipt_url:
            form["StatusCallback"] = message.receipt_url
        account_sid = self.setting("account_sid")
        credentials = base64.b64encode(f"{account_sid}:{self.setting('auth_token')}".encode()).decode()
        answer = post(
            f"{self.base_url}/2010-04-01/Accounts/{account_sid}/Messages.json",
            body=urlencode(form).encode(),
            headers={"Authorization": f"Basic {credentials}", "Accept": "application/json",
                     "Content-Type": "application/x-www-form-urlencoded"},
            timeout=self.timeout,
        )
        data = json_object(answer.body)
        if 200 <= answer.status < 300:
            return GatewayResult(provider_message_id=str(data.get("sid") or "")[:200],
                                 provider_status=str(data.get("status") or ""))
        code = str(data.get("code") or answer.status)
        if answer.status >= 500 or answer.status in TRANSIENT_STATUSES:
            raise TransientGatewayError(f"twilio error: HTTP {answer.status}, code {code}", error_code=code)
        raise PermanentGatewayError(f"twilio refused the message: HTTP {answer.status}, code {code}",
                                    error_code=code)

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        given = request.headers.get("X-Twilio-Signature", "")
        expected = signature(self.setting("auth_token"), request.url, request.form)
        if not given or not hmac.compare_digest(given, expected):
            raise ReceiptRejected("bad X-Twilio-Signature")
        status = STATUS_MAP.get(request.form.get("MessageStatus", ""))
        sid = request.form.get("MessageSid") or request.form.get("SmsSid") or ""
        if status is None or not sid:
            return []
        return [Receipt(provider_message_id=sid, status=status, provider_status=request.form["MessageStatus"],
                        error_code=request.form.get("ErrorCode", ""))]


def signature(auth_token: str, url: str, params: dict[str, str] | Any) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(auth token, URL + name + value of each POST param, by name))."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()

