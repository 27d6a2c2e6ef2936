"""Africa's Talking SMS: `POST {base_url}/version1/messaging` with the `apiKey` header.

Send: form-encoded `username`, `to` (E.164), `message` and `from` (the sender ID, when the account has
it). The answer (201) is `{"SMSMessageData": {"Message", "Recipients": [{"statusCode", "status", "number",
"messageId", "cost"}]}}`: statusCode 100 (processed), 101 (sent) and 102 (queued) are accepted; 500 and 501
(the platform's or a gateway's error) are worth retrying; 401-407 and 502 are final.
Receipts: the delivery-report callback configured in the Africa's Talking dashboard POSTs the form `id`,
`status`, `phoneNumber`, `networkCode`, `failureReason`. It carries no signature: configure its URL with
the route's `receipt_token` (`.../v1/webhooks/sms/<routeId>?token=<receipt_token>`).
"""

from urllib.parse import urlencode

from senders.gateways.base import (
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRequest,
    TransientGatewayError,
)
from senders.gateways.receipt_token import check_receipt_token
from senders.gateways.transport import ProviderGateway, json_object, post

DEFAULT_BASE_URL = "https://api.africastalking.com"  # the sandbox: https://api.sandbox.africastalking.com
ACCEPTED_CODES = frozenset({100, 101, 102})
TRANSIENT_CODES = frozenset({500, 501})
STATUS_MAP = {
    "Success": "delivered",
    "Failed": "undeliverable",
    "AbsentSubscriber": "undeliverable",
    "Rejected": "rejected",
    "Expired": "expired",
    "Sent": "sent",
    "Submitted": "sent",
    "Buffered": "sent",
}


class AfricasTalkingGateway(ProviderGateway):
    provider = "africastalking"
    # receipt_token: Africa's Talking signs no report, so without it no receipt can be authenticated.
    required_settings = ("username", "api_key", "receipt_token")
    optional_settings = ("base_url", "timeout")
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        form = {"username": self.setting("username"), "to": message.to, "message": message.text, "from": message.src}
        answer = post(
            f"{self.base_url}/version1/messaging",
            body=urlencode(form).encode(),
            headers={
                "apiKey": self.setting("api_key"),
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            timeout=self.timeout,
        )
        if answer.status >= 500 or answer.status == 429:
            raise TransientGatewayError(f"africastalking error: HTTP {answer.status}", error_code=str(answer.status))
        if answer.status >= 300:
            raise PermanentGatewayError(
                f"africastalking refused the request: HTTP {answer.status}", error_code=str(answer.status)
            )
        recipients = (json_object(answer.body).get("SMSMessageData") or {}).get("Recipients") or [{}]
        first = recipients[0] if isinstance(recipients[0], dict) else {}
        code = int(first.get("statusCode") or 0)
        status = str(first.get("status") or "")
        if code in ACCEPTED_CODES:
            return GatewayResult(provider_message_id=str(first.get("messageId") or "")[:200], provider_status=status)
        error = f"africastalking statusCode {code} ({status})"
        if code in TRANSIENT_CODES:
            raise TransientGatewayError(error, error_code=str(code), provider_status=status)
        raise PermanentGatewayError(error, error_code=str(code), provider_status=status)

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        check_receipt_token(self.config, request)
        status = STATUS_MAP.get(request.form.get("status", ""))
        message_id = request.form.get("id", "")
        if status is None or not message_id:
            return []
        return [
            Receipt(
                provider_message_id=message_id,
                status=status,
                provider_status=request.form["status"],
                error_code=request.form.get("failureReason", ""),
            )
        ]
