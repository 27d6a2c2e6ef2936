import threading

from senders.gateways.base import GatewayResult, OutgoingSms, SmsGateway

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
