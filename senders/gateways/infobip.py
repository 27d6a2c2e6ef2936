"""Infobip SMS API: `POST {base_url}/sms/2/text/advanced` with `Authorization: App <api key>`.

Send: JSON `{"messages": [{"destinations": [{"to", "messageId"}], "from", "text", "notifyUrl",
"notifyContentType": "application/json", "callbackData"}]}`; the answer lists each message with its
`messageId` and a `status` whose `groupName` is PENDING for an accepted one, REJECTED otherwise.
Receipts: Infobip POSTs `{"results": [{"messageId", "status": {"groupName", "name"}, "error": {...}}]}`
to `notifyUrl`. They carry no signature: the receipt URL holds the route's `receipt_token`.
"""

import json
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
from senders.gateways.receipt_token import check_receipt_token
from senders.gateways.transport import ProviderGateway, json_object, post

DEFAULT_BASE_URL = "https://api.infobip.com"  # accounts also have their own https://<id>.api.infobip.com
STATUS_MAP = {"DELIVERED": "delivered", "UNDELIVERABLE": "undeliverable", "EXPIRED": "expired",
              "REJECTED": "rejected"}


class InfobipGateway(ProviderGateway):
    provider = "infobip"
    required_settings = ("api_key",)
    default_base_url = DEFAULT_BASE_URL

    def send(self, message: OutgoingSms) -> GatewayResult:
        entry: dict[str, Any] = {
            "destinations": [{"to": message.to.lstrip("+"), "messageId": message.reference}],
            "from": message.src,
            "text": message.text,
            "callbackData": message.reference,
        }
        if message.receipt_url:
            entry["notifyUrl"] = _with_token(message.receipt_url, str(self.config.get("receipt_token") or ""))
            entry["notifyContentType"] = "application/json"
        answer = post(f"{self.base_url}/sms/2/text/advanced", body=json.dumps({"messages": [entry]}).encode(),
                      headers={"Authorization": f"App {self.setting('api_key')}", "Content-Type": "application/json",
                               "Accept": "application/json"}, timeout=self.timeout)
        data = json_object(answer.body)
        if answer.status >= 500 or answer.status == 429:
            raise TransientGatewayError(f"infobip error: HTTP {answer.status}", error_code=str(answer.status))
        if answer.status >= 300:
            exception = (data.get("requestError") or {}).get("serviceException") or {}
            code = str(exception.get("messageId") or answer.status)
            raise PermanentGatewayError(f"infobip refused the request: HTTP {answer.status}, {code}", error_code=code)
        messages = data.get("messages") or [{}]
        first = messages[0] if isinstance(messages[0], dict) else {}
        status = first.get("status") or {}
        group, name = str(status.get("groupName") or ""), str(status.get("name") or "")
        if group == "REJECTED":
            raise PermanentGatewayError(f"infobip rejected the message: {name}", error_code=name, provider_status=name)
        return GatewayResult(provider_message_id=str(first.get("messageId") or "")[:200], provider_status=name)

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        check_receipt_token(self.config, request)
        results = json_object(request.body).get("results")
        if not isinstance(results, list):
            raise ReceiptRejected("not an Infobip delivery report")
        receipts = []
        for result in results:
            if not isinstance(result, dict):
                continue
            status = result.get("status") or {}
            mapped = STATUS_MAP.get(str(status.get("groupName") or ""))
            if mapped and result.get("messageId"):
                error = result.get("error") or {}
                receipts.append(Receipt(provider_message_id=str(result["messageId"]), status=mapped,
                                        provider_status=str(status.get("name") or ""),
                                        error_code=str(error.get("name") or "") if error.get("id") else ""))
        return receipts


def _with_token(url: str, token: str) -> str:
    return f"{url}?{urlencode({'token': token})}" if token else url

