import hmac
import json
import threading

from senders.gateways.base import (
    FINAL_RECEIPT_STATUSES,
    RECEIPT_SENT,
    GatewayResult,
    OutgoingSms,
    PermanentGatewayError,
    Receipt,
    ReceiptInvalid,
    ReceiptRejected,
    ReceiptRequest,
    SmsGateway,
)

# Every SMS sent through the locmem backend, in order; tests read and clear it.
outbox: list[OutgoingSms] = []
_lock = threading.Lock()


class LocmemGateway(SmsGateway):
    """Test backend: keeps messages in memory, like Django's locmem email backend."""

    development_only = True

    def send(self, message: OutgoingSms) -> GatewayResult:
        with _lock:
            outbox.append(message)
        return GatewayResult(provider_message_id=f"locmem-{message.reference}")


class LocmemWhatsAppGateway(LocmemGateway):
    """Test backend of the WhatsApp channel: keeps each message (its text is the code) in `outbox`.

    Route settings: `receipt_token`, which the receipts a test posts to the route's receipt URL must carry
    (see parse_receipts); `fail` = `permanent`, to refuse every send as a provider refusing it for good.
    """

    channel = "whatsapp"
    optional_settings = ("receipt_token", "fail")

    def send(self, message: OutgoingSms) -> GatewayResult:
        if self.config.get("fail") == "permanent":
            raise PermanentGatewayError("refused (locmem route set to fail)", error_code="locmem")
        with _lock:
            outbox.append(message)
        return GatewayResult(provider_message_id=f"locmem-{self.channel}-{message.reference}")

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        """JSON `{"id": "<provider message id>", "status": "<one of the receipt statuses>"}`, with the
        route's `receipt_token` as a Bearer token: the `http` backend's receipt, for tests only."""
        token = str(self.config.get("receipt_token") or "")
        sent = request.headers.get("Authorization", "")
        if not token or not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            raise ReceiptRejected("bad receipt token")
        try:
            body = json.loads(request.body)
            receipt = Receipt(provider_message_id=str(body["id"]), status=str(body["status"]))
        except (ValueError, KeyError, TypeError):
            raise ReceiptInvalid("not a locmem receipt", field="status") from None
        if receipt.status != RECEIPT_SENT and receipt.status not in FINAL_RECEIPT_STATUSES:
            raise ReceiptInvalid("unknown status", field="status")
        return [receipt]


class LocmemVoiceGateway(LocmemWhatsAppGateway):
    """Test backend of the voice channel: keeps each call (its text is what the call says) in `outbox`."""

    channel = "voice"
