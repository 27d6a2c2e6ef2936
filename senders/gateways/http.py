"""The `http` backend: Zeckta's own JSON shape (API.md section 7), for a relay or a provider adapter."""

import json
from typing import Any

from senders.gateways import default_route_config
from senders.gateways.base import (
    FINAL_RECEIPT_STATUSES,
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptRequest,
    SmsGateway,
    TransientGatewayError,
    receipt_time,
)
from senders.gateways.receipt_token import check_receipt_token
from senders.gateways.transport import post


class HttpGateway(SmsGateway):
    """POSTs {"to", "from", "text", "reference"} as JSON to the route's `url`.

    2xx: accepted (an `id` in the JSON answer is kept); 4xx: permanent failure; 5xx, timeout or a
    connection error: transient, retried by the caller with the same `reference`. Receipts are JSON
    {"id", "status", "timestamp"} with the route's `receipt_token` as a Bearer token or `?token=`.
    """

    required_settings = ("url",)
    optional_settings = ("token", "receipt_token", "timeout")

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        # Without route settings: the default route's (the SMS_HTTP_* settings).
        super().__init__(config if config is not None else default_route_config())
        self.url = str(self.config.get("url") or "")
        if not self.url:
            raise PermanentGatewayError("the http route has no url (SMS_HTTP_URL)")
        if not self.url.startswith(("http://", "https://")):
            raise PermanentGatewayError("the http route's url must be an http:// or https:// URL")
        self.token = str(self.config.get("token") or "")
        self.timeout = float(self.config.get("timeout") or 5.0)  # seconds

    def send(self, message: OutgoingSms) -> GatewayResult:
        body = json.dumps(
            {"to": message.to, "from": message.src, "text": message.text, "reference": message.reference}
        ).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        answer = post(self.url, body=body, headers=headers, timeout=self.timeout)
        if 300 <= answer.status < 500:
            # 4xx: the gateway refused this message; 3xx: a misconfigured URL. Retrying cannot help.
            raise PermanentGatewayError(
                f"gateway refused the message: HTTP {answer.status}", error_code=str(answer.status)
            )
        if answer.status >= 500:
            raise TransientGatewayError(f"gateway error: HTTP {answer.status}", error_code=str(answer.status))
        return GatewayResult(provider_message_id=_message_id(answer.body))

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        check_receipt_token(self.config, request)
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return []
        if not isinstance(data, dict) or data.get("status") not in FINAL_RECEIPT_STATUSES | {"sent"}:
            return []
        # An absurd timestamp is refused (400), not stored: see receipt_time.
        return [
            Receipt(
                provider_message_id=str(data.get("id") or ""),
                status=data["status"],
                provider_status=data["status"],
                at=receipt_time(data.get("timestamp")),
            )
        ]


def _message_id(payload: bytes) -> str:
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        return ""
    value = data.get("id") if isinstance(data, dict) else None
    return str(value)[:200] if value is not None else ""
