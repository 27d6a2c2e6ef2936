"""Infobip SMS API: `POST {base_url}/sms/2/text/advanced` with `Authorization: App <api key>`.

Send: JSON `{"messages": [{"destinations": [{"to", "messageId"}], "from", "text", "notifyUrl",
"notifyContentType": "application/json", "callbackData"}]}`; the answer lists each message with its
`messageId` and a `status` whose `groupName` is PENDING for an accepted one, REJECTED otherwise.
Our reference is the `messageId`, the same on every retry, so Infobip can drop a duplicate: it answers a
reused one with REJECTED_DUPLICATE_MESSAGE_ID. On a retry that means the first call went through and
only its answer was lost (a time-out): the message is accepted, under the same id, and stays on this
route. On a first call it is an error like any other rejection.
Receipts: Infobip POSTs `{"results": [{"messageId", "status": {"groupName", "name"}, "error": {...}}]}`
to `notifyUrl`. They carry no signature: the receipt URL holds the route's `receipt_token`. Only
DELIVERED_TO_HANDSET is delivery: DELIVERED_TO_OPERATOR (status id 2, group DELIVERED) is intermediate,
"a further DLR may follow", and counts as `sent`, so a later UNDELIVERABLE still takes effect.
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
# Status groups in the contract's words; PENDING says nothing new. The DELIVERED group is mapped by name.
STATUS_MAP = {"UNDELIVERABLE": "undeliverable", "EXPIRED": "expired", "REJECTED": "rejected"}
DELIVERED_TO_HANDSET = "DELIVERED_TO_HANDSET"  # the one final delivery; the rest of its group is `sent`
DUPLICATE_MESSAGE_ID = "REJECTED_DUPLICATE_MESSAGE_ID"


class InfobipGateway(ProviderGateway):
    provider = "infobip"
    # receipt_token: Infobip signs no report, so without it no receipt can be authenticated.
    required_settings = ("api_key", "receipt_token")
    optional_settings = ("base_url", "timeout")
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
        answer = post(
            f"{self.base_url}/sms/2/text/advanced",
            body=json.dumps({"messages": [entry]}).encode(),
            headers={
                "Authorization": f"App {self.setting('api_key')}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            timeout=self.timeout,
        )
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
        if group == "REJECTED" and name == DUPLICATE_MESSAGE_ID and message.retry:
            # Infobip already holds this messageId: the earlier call, whose answer never came, was accepted.
            return GatewayResult(provider_message_id=message.reference[:200], provider_status=name)
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
            mapped = _receipt_status(group=str(status.get("groupName") or ""), name=str(status.get("name") or ""))
            if mapped and result.get("messageId"):
                error = result.get("error") or {}
                receipts.append(
                    Receipt(
                        provider_message_id=str(result["messageId"]),
                        status=mapped,
                        provider_status=str(status.get("name") or ""),
                        error_code=str(error.get("name") or "") if error.get("id") else "",
                    )
                )
        return receipts


def _receipt_status(*, group: str, name: str) -> str | None:
    if name == DUPLICATE_MESSAGE_ID:
        return None  # a report on a refused duplicate call: the message it names was accepted before
    if group == "DELIVERED":
        return "delivered" if name == DELIVERED_TO_HANDSET else "sent"
    return STATUS_MAP.get(group)


def _with_token(url: str, token: str) -> str:
    return f"{url}?{urlencode({'token': token})}" if token else url
