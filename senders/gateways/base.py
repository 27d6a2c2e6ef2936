"""What every SMS backend speaks: an outgoing SMS, the provider's answer, and its delivery receipts."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone


@dataclass(frozen=True)
class OutgoingSms:
    to: str  # E.164
    src: str  # the sender name the phone shows (SenderName.name)
    text: str
    reference: str  # our message id: the same on every retry, so the gateway can drop duplicates
    # Where the provider should post this message's delivery receipts ("" when PUBLIC_URL is not set).
    receipt_url: str = ""
    # An earlier call on this route carried the same reference: its answer may have been lost (a time-out),
    # so the provider may already hold the message (Infobip then refuses the duplicate messageId).
    retry: bool = False
    # API.md section 15. `text` is what the channel carries: the SMS itself, the code for WhatsApp (the
    # template's parameters), what a call says for voice. `locale`: the session's language (a BCP 47 tag).
    channel: str = "sms"
    locale: str = "en"

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
    form: Mapping[str, str]  # an application/x-www-form-urlencoded body (a repeated name: its last value)
    body: bytes
    content_type: str
    # The same form with every value of a repeated name, in order: what Twilio's signature covers.
    form_lists: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    provider_message_id: str
    status: str  # RECEIPT_SENT or one of FINAL_RECEIPT_STATUSES
    provider_status: str = ""
    error_code: str = ""
    at: datetime | None = None


class ReceiptRejected(Exception):
    """The callback failed the provider's authentication (signature, token): it changes nothing."""


class ReceiptInvalid(Exception):
    """The callback authenticated but says something the service refuses to store (an absurd timestamp):
    answered 400, it changes nothing. `field` names the receipt's field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


# The times a receipt's own timestamp may name. Not before 2000 (no SMS of this service is older), and
# not more than a day ahead of this clock (a provider's clock may be off, not by more): outside these it
# is no delivery time, and PostgreSQL would store years that Python cannot read back.
RECEIPT_TIME_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
RECEIPT_TIME_AHEAD = timedelta(days=1)


def receipt_time(value: object) -> datetime | None:
    """A receipt's ISO-8601 timestamp as an aware UTC datetime (a naive one is read as UTC); None when
    absent. ReceiptInvalid when it is not ISO-8601 or lies outside RECEIPT_TIME_EARLIEST .. now +
    RECEIPT_TIME_AHEAD: `9999-12-31T23:59:59-14:00` is year 10000 in UTC, `0001-01-01T00:00:00+14:00` year
    0, and one such row made every page that shows it answer 500."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ReceiptInvalid("the receipt's timestamp is not an ISO-8601 string", field="timestamp")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)  # the contract's timestamps are UTC
        parsed = parsed.astimezone(UTC)  # OverflowError past year 9999 or before year 1
        within = RECEIPT_TIME_EARLIEST <= parsed <= timezone.now() + RECEIPT_TIME_AHEAD
    except (ValueError, OverflowError):
        within = False
    if not within:
        raise ReceiptInvalid("the receipt's timestamp is not an ISO-8601 time between 2000 and now", field="timestamp")
    return parsed


def receipt_unix_time(value: object) -> datetime | None:
    """A receipt's unix time (seconds, a number or its digits: WhatsApp's `timestamp`) as an aware UTC
    datetime; None when absent. ReceiptInvalid outside the bounds of receipt_time."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromtimestamp(int(str(value)), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise ReceiptInvalid("the receipt's timestamp is not unix seconds", field="timestamp") from None
    return receipt_time(parsed.isoformat())


class SmsGateway:
    """One backend. `config` holds the route's settings (credentials included), or, for the default
    route, the SMS_* settings.

    `required_settings` and `optional_settings` are the one list of what a route of this backend takes
    (API.md section 11): route validation (add_route, the admin) and the gateway itself read them here.
    """

    required_settings: tuple[str, ...] = ()
    optional_settings: tuple[str, ...] = ()
    # The channel this backend sends by (zeckta.channels.Channel): a route serves only its backend's channel.
    channel = "sms"
    # Prints or keeps the codes instead of sending them (console, file, locmem): never a production route.
    development_only = False

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: Mapping[str, Any] = config or {}

    def send(self, message: OutgoingSms) -> GatewayResult:
        raise NotImplementedError

    def parse_receipts(self, request: ReceiptRequest) -> list[Receipt]:
        """Authenticates a callback (ReceiptRejected if it fails) and reads the receipts it carries."""
        raise ReceiptRejected(f"{type(self).__name__} takes no delivery receipts")

    def answer_handshake(self, request: ReceiptRequest) -> str | None:
        """The text to answer a provider's `GET` on the receipt URL with (WhatsApp's verification
        handshake), ReceiptRejected when it fails the check, or None: the backend takes no GET (405)."""
        return None

    @classmethod
    def settings_problem(cls, values: Mapping[str, Any]) -> str | None:
        """What is wrong with a route's settings beyond the names (a key that does not parse), or None.
        Route validation (add_route, the admin) calls it once the required settings are all there."""
        return None

    @classmethod
    def receipt_url_problem(cls, url: str) -> str | None:
        """Why the provider would refuse `url` as this backend's receipt URL, or None."""
        return None
