import sys

from senders.gateways.base import GatewayResult, OutgoingSms, SmsGateway


class ConsoleGateway(SmsGateway):
    """Development backend: writes the SMS to standard output, as Django's console email backend does."""

    development_only = True

    def send(self, message: OutgoingSms) -> GatewayResult:
        sys.stdout.write(f"[SMS] to={message.to} from={message.src} ref={message.reference}\n{message.text}\n")
        sys.stdout.flush()
        return GatewayResult(provider_message_id=f"console-{message.reference}")
