import math
import re
import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import Any

import pycountry
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from otp.destinations import DestinationRefused, destination_parse
from otp.models import OtpSession, Purpose, SmsMessage, VerifyOutcome
from otp.transactions import Transaction
from zeckta import sms_text
from zeckta.api.fields import BlankAsNullField, FieldsCopiedShallow, IsoDateTimeField, StrictCharField
from zeckta.channels import LOCALE_MAX_LENGTH, Channel
from zeckta.locales import LOCALE_ERROR, locale_normalise
from zeckta.sms_text import TRANSACTION_PLACEHOLDERS, template_errors

# ASCII digits only: `\d` would also take "123456\n" and Arabic-Indic digits.
CODE_RE = re.compile(r"[0-9]{4,10}")
# A positive decimal string, at most two places; up to a trillion, far past any one payment.
AMOUNT_RE = re.compile(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?")
PAYEE_MAX_CHARS = 40


class TransactionSerializer(FieldsCopiedShallow):
    """`{"amount": "125.50", "currency": "GHS", "payee": "Acme Shop"}`, read into a `Transaction`."""

    amount = StrictCharField(
        trim_whitespace=False, max_length=16, help_text="A decimal string greater than 0 with at most 2 decimals."
    )
    currency = StrictCharField(trim_whitespace=False, max_length=3, help_text="An ISO 4217 code.")
    payee = StrictCharField(
        trim_whitespace=False, max_length=PAYEE_MAX_CHARS, help_text="1 to 40 printable characters."
    )

    def validate_amount(self, value: str) -> str:
        if not AMOUNT_RE.fullmatch(value) or Decimal(value) <= 0:
            raise serializers.ValidationError(
                'Use a decimal string greater than 0 with at most 2 decimals, such as "125.50".'
            )
        return value

    def validate_currency(self, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value) or pycountry.currencies.get(alpha_3=value.upper()) is None:
            raise serializers.ValidationError('Use an ISO 4217 currency code, such as "GHS".')
        return value

    def validate_payee(self, value: str) -> str:
        # What the phone shows as the payee: nothing that hides or reorders text.
        if not value.strip() or not value.isprintable() or any(unicodedata.category(ch) == "Cf" for ch in value):
            raise serializers.ValidationError(f"Use 1 to {PAYEE_MAX_CHARS} printable characters.")
        return value

    def validate(self, attrs: dict[str, str]) -> Transaction:
        return Transaction.normalised(amount=attrs["amount"], currency=attrs["currency"], payee=attrs["payee"])

    def to_representation(self, instance: Any) -> dict[str, str]:
        return instance if isinstance(instance, dict) else instance.as_dict()


class OtpRequestInputSerializer(FieldsCopiedShallow):
    dest = StrictCharField(max_length=20, trim_whitespace=False)
    src = StrictCharField(max_length=16, trim_whitespace=False)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    messageTemplate = StrictCharField(required=False, allow_null=True, trim_whitespace=False, max_length=1000)
    appHash = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        max_length=11,
        help_text="Android SMS Retriever: the app's 11-character hash, put on its own line after the text.",
    )
    webOtpDomain = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        max_length=sms_text.WEB_OTP_DOMAIN_MAX_CHARS,
        help_text="WebOTP: the SMS ends with the line `@<domain> #<code>`, which browsers fill in on that origin.",
    )
    transaction = TransactionSerializer(
        required=False,
        allow_null=True,
        help_text="Purpose TRANSACTION only: shown in the SMS (<AMOUNT>, <PAYEE>) and bound to the code.",
    )
    channel = serializers.ChoiceField(
        choices=Channel.values,
        required=False,
        allow_null=True,
        help_text="The first send's channel; without it, the first of the workspace's fallback order that has a "
        "route for the number's country. A channel with no such route: 400 with errors.channel.",
    )
    locale = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        max_length=LOCALE_MAX_LENGTH,
        help_text="The language of the text: a BCP 47 tag such as `fr` or `pt-BR` (case-insensitive). A tag "
        "without texts falls back to its language, then to the workspace's locale, then to `en`. Default texts "
        "exist in en, fr, pt, es, ar and sw; a workspace may keep its own per purpose and locale.",
    )

    def validate_locale(self, value: str | None) -> str | None:
        if value is None:
            return None
        normalised = locale_normalise(value)
        if normalised is None:
            raise serializers.ValidationError(LOCALE_ERROR)
        return normalised

    def validate_appHash(self, value: str | None) -> str | None:
        if value is not None and not sms_text.APP_HASH_RE.fullmatch(value):
            raise serializers.ValidationError("The app hash is 11 characters of A-Z, a-z, 0-9, + and /.")
        return value

    def validate_webOtpDomain(self, value: str | None) -> str | None:
        if value is not None and not sms_text.WEB_OTP_DOMAIN_RE.fullmatch(value):
            raise serializers.ValidationError("Use a host name such as example.com (no scheme, port or path).")
        return value.lower() if value is not None else None

    def validate_messageTemplate(self, value: str | None) -> str | None:
        if value is None:
            return None
        # <AMOUNT> and <PAYEE> are checked against the transaction in validate().
        problems = template_errors(value, transaction=True)
        if problems:
            raise serializers.ValidationError(problems)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        if attrs.get("transaction") is not None and attrs["purpose"] != Purpose.TRANSACTION:
            errors["transaction"] = ["Only a request with purpose TRANSACTION takes a transaction."]
        template = attrs.get("messageTemplate")
        if template and attrs.get("transaction") is None:
            used = sorted(placeholder for placeholder in TRANSACTION_PLACEHOLDERS if placeholder in template)
            if used:
                errors["messageTemplate"] = [f"{' and '.join(used)} need a transaction in the request."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class OtpResendInputSerializer(serializers.Serializer):
    channel = serializers.ChoiceField(
        choices=Channel.values,
        required=False,
        allow_null=True,
        help_text="The new send's channel; without it, the session's current one. A channel with no route for the "
        "number's country: 400 with errors.channel.",
    )


class OtpVerifyInputSerializer(FieldsCopiedShallow):
    sessionId = serializers.UUIDField(format="hex_verbose")
    code = StrictCharField(trim_whitespace=False, max_length=10)
    transaction = TransactionSerializer(
        required=False,
        allow_null=True,
        help_text="When sent, must equal the session's transaction: another one is a wrong code (INVALID).",
    )

    def validate_sessionId(self, value: Any) -> Any:
        if not isinstance(self.initial_data.get("sessionId"), str):
            raise serializers.ValidationError("Must be a valid UUID.")
        return value

    def validate_code(self, value: str) -> str:
        if not CODE_RE.fullmatch(value):
            raise serializers.ValidationError("The code must be 4 to 10 digits (0-9).")
        return value


class SecondsUntilField(serializers.IntegerField):
    """Whole seconds from the context's `now` until a datetime: rounded up (a session issued this instant
    reports its full validity, 300 and not 299), never negative."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_value=0, **kwargs)

    # IntegerField's stub expects an int in; this field reads a datetime and writes the int.
    def to_representation(self, value: datetime) -> int:  # type: ignore[override]
        return seconds_until(value, now=self.context["now"])


def seconds_until(value: datetime, *, now: datetime) -> int:
    return max(math.ceil((value - now).total_seconds()), 0)


# --- Output shapes (the `data` of each answer), read from the session and the service's results; the
# OpenAPI document and the real answers come from the same field lists. The views pass {"now": ...}.


class OtpRequestDataSerializer(FieldsCopiedShallow):
    """An `OtpRequestResult`."""

    sessionId = serializers.UUIDField(source="session_id")
    expiresInSeconds = SecondsUntilField(source="expires_at")
    attemptsLeft = serializers.IntegerField(source="attempts_left", min_value=0)
    reused = serializers.BooleanField()
    resendAvailableInSeconds = SecondsUntilField(
        source="resend_available_at",
        allow_null=True,
        help_text="Seconds until POST .../resend is allowed; null once the session has no resend left.",
    )


class OtpResendDataSerializer(OtpRequestDataSerializer):
    """An `OtpRequestResult` of a resend."""

    resends = serializers.IntegerField(min_value=1, help_text="Resends of this session so far, this one included.")


class OtpVerifyDataSerializer(FieldsCopiedShallow):
    """A `VerifyResult`."""

    sessionId = serializers.UUIDField(source="session_id")
    status = serializers.ChoiceField(source="outcome", choices=VerifyOutcome.choices)
    verified = serializers.BooleanField()
    attemptsLeft = serializers.IntegerField(source="attempts_left", min_value=0)


# delivery.status, also in the relay's view of an SMS: one enum of the OpenAPI document (ENUM_NAME_OVERRIDES).
SMS_STATUSES = SmsMessage.Status.values


class DeliverySerializer(FieldsCopiedShallow):
    """An `SmsMessage`."""

    status = serializers.ChoiceField(choices=SMS_STATUSES)
    segments = serializers.IntegerField(min_value=1)
    units = serializers.IntegerField(min_value=1)
    attempts = serializers.IntegerField(min_value=0, help_text="Calls made to the SMS gateway.")
    updatedAt = IsoDateTimeField(source="updated_at")
    route = BlankAsNullField(source="route_name", help_text="The provider route that carried the latest send.")
    deliveredAt = IsoDateTimeField(
        source="delivered_at", allow_null=True, help_text="When its delivery receipt said it arrived; null until then."
    )
    channel = serializers.ChoiceField(choices=Channel.values, help_text="The channel of the latest send.")


class OtpSessionDataSerializer(FieldsCopiedShallow):
    """An `OtpSession`, with its SMS (`delivery` is null while it has none)."""

    sessionId = serializers.UUIDField(source="public_id")
    dest = serializers.CharField()
    src = serializers.CharField()
    purpose = serializers.ChoiceField(choices=Purpose.values)
    status = serializers.SerializerMethodField()
    expiresInSeconds = SecondsUntilField(source="expires_at")
    attemptsLeft = serializers.IntegerField(source="attempts_left", min_value=0)
    resendAvailableInSeconds = serializers.SerializerMethodField(
        help_text="Seconds until a resend is allowed; null when none is possible (not pending, or no resend left)."
    )
    resends = serializers.IntegerField(min_value=0)
    transaction = TransactionSerializer(allow_null=True)
    createdAt = IsoDateTimeField(source="created_at")
    verifiedAt = IsoDateTimeField(source="verified_at", allow_null=True)
    delivery = DeliverySerializer(source="latest_sms", allow_null=True, help_text="The latest send's SMS.")

    @extend_schema_field(serializers.ChoiceField(choices=OtpSession.Status.values))
    def get_status(self, session: OtpSession) -> str:
        """A pending session past its expiry is EXPIRED to the client even before anything writes that."""
        if session.status == OtpSession.Status.PENDING and session.expires_at <= self.context["now"]:
            return OtpSession.Status.EXPIRED
        return session.status

    @extend_schema_field(serializers.IntegerField(min_value=0, allow_null=True))
    def get_resendAvailableInSeconds(self, session: OtpSession) -> int | None:
        if self.get_status(session) != OtpSession.Status.PENDING or session.resend_available_at is None:
            return None
        return seconds_until(session.resend_available_at, now=self.context["now"])


# --- Test mode -----------------------------------------------------------------------------------


class InboxQuerySerializer(serializers.Serializer):
    dest = StrictCharField(
        max_length=20, trim_whitespace=False, help_text="E.164, e.g. +233202007745 (in a URL, %2B for the plus sign)."
    )

    def validate_dest(self, value: str) -> str:
        # An unencoded "+" in a query string reads as a space: `?dest=+233...` means what it says.
        if value.startswith(" ") and value[1:].isdigit():
            value = "+" + value[1:]
        try:
            destination_parse(value)
        except DestinationRefused as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class InboxMessageSerializer(serializers.Serializer):
    """An `otp.selectors.InboxMessage`: a test SMS as it would have reached the phone."""

    sessionId = serializers.UUIDField(
        source="session_id", allow_null=True, help_text="null for a relayed SMS (POST /v1/messaging/sms)."
    )
    dest = serializers.CharField()
    src = serializers.CharField()
    text = serializers.CharField(help_text="The whole SMS, code included.")
    createdAt = IsoDateTimeField(source="created_at")
