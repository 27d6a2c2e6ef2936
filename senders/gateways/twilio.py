"""Twilio Programmable Messaging: the Messages resource, status callbacks and `X-Twilio-Signature`.

Send: `POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `Body`, `From`
(or `MessagingServiceSid`) and `StatusCallback`, HTTP Basic auth with the Account SID and Auth Token.
201 answers the message resource (`sid`, `status`); an error answers `{"code", "message", "status"}`.
Receipts: Twilio POSTs the form `MessageSid`, `MessageStatus`, `ErrorCode` to the StatusCallback, signed
with HMAC-SHA1(Auth Token, URL + each POST parameter's name and value, sorted by name), base64.

The check accepts what Twilio's own validator (twilio-python's `RequestValidator.validate`) accepts: the
URL with its port removed or with the scheme's default one added (Twilio's signing is not consistent
about `:443`), and every value of a repeated parameter, sorted. It is written here rather than taken
from Twilio's SDK: a few lines over the standard library, where the SDK would bring its own HTTP stack
for nothing else; the tests hold it to vectors the SDK computes.
"""

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode, urlsplit

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
    optional_settings = ("messaging_service_sid", "base_url", "timeout")
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
            headers={
                "Authorization": f"Basic {credentials}",
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=self.timeout,
        )
        data = json_object(answer.body)
        if 200 <= answer.status < 300:
            return GatewayResult(
                provider_message_id=str(data.get("sid") or "")[:200], provider_status=str(data.get("status") or "")
            )
        code = str(data.get("code") or answer.status)
        if answer.status >= 500 or answer.status in TRANSIENT_STATUSES:
            raise TransientGatewayError(f"twilio error: HTTP {answer.status}, code {code}", error_code=code)
        raise PermanentGatewayError(f"twilio refused the message: HTTP {answer.status}, code {code}", error_code=code)

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        check_signature(self.setting("auth_token"), request)
        status = STATUS_MAP.get(request.form.get("MessageStatus", ""))
        sid = request.form.get("MessageSid") or request.form.get("SmsSid") or ""
        if status is None or not sid:
            return []
        return [
            Receipt(
                provider_message_id=sid,
                status=status,
                provider_status=request.form["MessageStatus"],
                error_code=request.form.get("ErrorCode", ""),
            )
        ]


def check_signature(auth_token: str, request: ReceiptRequest) -> None:
    """ReceiptRejected unless the callback carries Twilio's `X-Twilio-Signature` of its URL and form (the
    Messages and the Calls status callbacks are signed alike)."""
    # Bytes: compare_digest refuses a str with non-ASCII characters (TypeError, a 500).
    given = request.headers.get("X-Twilio-Signature", "").encode()
    params = request.form_lists or {name: [value] for name, value in request.form.items()}
    expected = [signature(auth_token, url, params) for url in _url_forms(request.url)]
    # Both forms are compared, whichever matches: no early exit tells which form was tried.
    matches = [hmac.compare_digest(given, candidate.encode()) for candidate in expected]
    if not given or not any(matches):
        raise ReceiptRejected("bad X-Twilio-Signature")


def signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """Twilio's request signature: base64(HMAC-SHA1(auth token, URL + name + value of each POST parameter,
    names sorted, and each name's values sorted, once each, as twilio-python's RequestValidator does))."""
    payload = url
    for name in sorted(params):
        values = params[name]
        for value in sorted(set([values] if isinstance(values, str) else values)):
            payload += name + value
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def _url_forms(url: str) -> tuple[str, str]:
    """The URL without its port and with the scheme's default port (443, else 80) when it names none:
    the two forms twilio-python's validator accepts."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: no form of it can match
        port = None
    if port:
        return parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]).geturl(), url
    default_port = 443 if parts.scheme == "https" else 80
    return url, parts._replace(netloc=f"{parts.netloc}:{default_port}").geturl()
