"""What every SMS backend speaks: an outgoing SMS, the provider's answer, and its delivery receipts."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class OutgoingSms:
    to: str  # E.164
    src: str  # the sender name the phone shows (SenderName.name)
    text: str
    reference: str  # our message id: the same on every retry, so the gateway can drop duplicates
    # Where the provider should post this message's delivery receipts ("" when PUBLIC_URL is not set).
    receipt_url: str = ""

    def __repr__(self) -> str:
        # The text holds the code: keep it out of tracebacks and debug output.
        return f"OutgoingSms(to={self.to!r}, src={self.src!r}, reference={self.reference!r}, text=<hidden>)"


@dataclass(frozen=True)
class GatewayResult:
    provider_message_id: str = ""
    provider_status: str = ""


class GatewayError(Exception):
    """A gateway refused or failed a send. Messages never contain the SMS text."""

    def __init__(self, message: str, *, error_code: str = "", provider_status: str = "") -> None:
        super().__init__(message)
        self.error_code = error_code
        self.provider_status = provider_status


class TransientGatewayError(GatewayError):
    """Worth retrying: 5xx, timeout, connection error, the provider throttling us."""


class PermanentGatewayError(GatewayError):
    """Retrying this route cannot help: the provider rejected the message (4xx)."""


# --- Receipts -------------------------------------------------------------------------------------

# What a receipt may say, in the contract's words (API.md section 4). The last four are final.
RECEIPT_SENT = "sent"
FINAL_RECEIPT_STATUSES = frozenset({"delivered", "undeliverable", "rejected", "expired"})


@dataclass(frozen=True)
class ReceiptRequest:
    """A provider's callback as it arrived: what each backend needs to authenticate and read it."""

    url: str  # absolute, as the provider called it (PUBLIC_URL + path + query when PUBLIC_URL is set)
    headers: Mapping[str, str]
    query: Mapping[str, str]
    form: Mapping[str, str]  # an application/x-www-form-urlencoded body, else empty
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Receipt:
    provider_message_id: str
    status: str  # RECEIPT_SENT or one of FINAL_RECEIPT_STATUSES
    provider_status: str = ""
    error_code: str = ""
    at: datetime | None = None


class ReceiptRejected(Exception):
    """The callback failed the provider's authentication (signature, token): it changes nothing."""


class SmsGateway:
    """One backend. `config` holds the route's settings (credentials included), or, for the default
    route, the SMS_* settings."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: Mapping[str, Any] = config or {}

    def send(self, message: OutgoingSms) -> GatewayResult:
        raise NotImplementedError

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        """Authenticates a callback (ReceiptRejected if it fails) and reads the receipts it carries."""
        raise ReceiptRejected(f"{type(self).__name__} takes no delivery receipts")


@dataclass(frozen=True)
class BackendSpec:
    """What a route of one backend needs in its settings."""

    path: str  # dotted path of the SmsGateway class
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = field(default_factory=frozenset)
