from dataclasses import dataclass


@dataclass(frozen=True)
class OutgoingSms:
    to: str  # E.164
    src: str  # the sender name the phone shows (SenderName.name)
    text: str
    reference: str  # our message id: the same on every retry, so the gateway can drop duplicates

    def __repr__(self) -> str:
        # The text holds the code: keep it out of tracebacks and debug output.
        return f"OutgoingSms(to={self.to!r}, src={self.src!r}, reference={self.reference!r}, text=<hidden>)"


@dataclass(frozen=True)
class GatewayResult:
    provider_message_id: str = ""


class GatewayError(Exception):
    """A gateway refused or failed a send. Messages never contain the SMS text."""


class TransientGatewayError(GatewayError):
    """Worth retrying: 5xx, timeout, connection error."""


class PermanentGatewayError(GatewayError):
    """Retrying cannot help: the gateway rejected the message (4xx)."""


class SmsGateway:
    def send(self, message: OutgoingSms) -> GatewayResult:
        raise NotImplementedError
