"""Twilio's form parameters, read into what the OTP services take. Field names are Twilio's (`To`, `Code`):
a client written against Twilio sends exactly these. Parameters Twilio defines and this door does not use
(CustomFriendlyName, TemplateSid, ...) are ignored, as Twilio ignores what a service does not enable."""

import re
import uuid
from typing import Any

from rest_framework import serializers

from otp.serializers import CODE_RE, TransactionSerializer
from otp.transactions import Transaction
from zeckta.locales import locale_normalise

CHANNEL_SMS = "sms"
# Twilio's `auto` lets Twilio pick the channel; the only one here is SMS.
CHANNELS_SERVED = frozenset({CHANNEL_SMS, "auto"})
# Twilio's Verification sid: VE and the session's UUID in 32 lower-case hex digits, so no table maps them.
SID_RE = re.compile(r"VE([0-9a-f]{32})")
# A BCP 47 tag such as "en", "pt-BR" or "zh-HK": accepted and checked; the text is the workspace's own.
# Twilio's Amount is free text ("€39.99", "39.99 EUR"); this service binds a code to an ISO 4217 currency
# and a decimal, so the currency must be named, by its code or by one of these unambiguous symbols.
CURRENCY_SYMBOLS = {"€": "EUR", "£": "GBP", "₵": "GHS", "₦": "NGN", "₹": "INR", "₺": "TRY", "₩": "KRW"}
AMOUNT_FORMS = (
    re.compile(r"(?P<currency>[A-Za-z]{3})\s?(?P<amount>[0-9.]+)"),
    re.compile(r"(?P<amount>[0-9.]+)\s?(?P<currency>[A-Za-z]{3})"),
    re.compile(r"(?P<symbol>\S)\s?(?P<amount>[0-9.]+)"),
    re.compile(r"(?P<amount>[0-9.]+)\s?(?P<symbol>\S)"),
)


def sid_of(session_id: uuid.UUID) -> str:
    return f"VE{session_id.hex}"


def session_id_of(sid: str) -> uuid.UUID | None:
    match = SID_RE.fullmatch(sid)
    return uuid.UUID(match.group(1)) if match else None


def _amount_parts(value: str) -> dict[str, str] | None:
    for form in AMOUNT_FORMS:
        match = form.fullmatch(value.strip())
        if match is None:
            continue
        parts = match.groupdict()
        currency = parts.get("currency") or CURRENCY_SYMBOLS.get(parts.get("symbol") or "")
        if currency:
            return {"amount": parts["amount"], "currency": currency}
    return None


def transaction_of(attrs: dict[str, Any]) -> Transaction | None:
    """Amount and Payee, both or neither, as the Transaction their code is bound to (API.md section 8)."""
    amount, payee = attrs.get("Amount"), attrs.get("Payee")
    if amount is None and payee is None:
        return None
    if amount is None or payee is None:
        missing = "Amount" if amount is None else "Payee"
        raise serializers.ValidationError({missing: ["Amount and Payee are sent together."]})
    parts = _amount_parts(amount)
    if parts is None:
        raise serializers.ValidationError({"Amount": ['Name the currency: "EUR 39.99", "39.99 EUR" or "€39.99".']})
    inner = TransactionSerializer(data={**parts, "payee": payee})
    if not inner.is_valid():
        field_names = {"payee": "Payee"}  # the amount and its currency are both Twilio's Amount
        errors: dict[str, list[str]] = {}
        for name, messages in inner.errors.items():
            errors.setdefault(field_names.get(name, "Amount"), []).extend(str(message) for message in messages)
        raise serializers.ValidationError(errors)
    return inner.validated_data


def _optional() -> serializers.CharField:
    return serializers.CharField(required=False, trim_whitespace=False, max_length=200)


class VerificationCreateSerializer(serializers.Serializer):
    To = serializers.CharField(trim_whitespace=False, max_length=32)
    Channel = serializers.CharField(trim_whitespace=False, max_length=16)
    Locale = serializers.CharField(required=False, trim_whitespace=False, max_length=35)
    Amount = _optional()
    Payee = _optional()
    AppHash = serializers.CharField(required=False, trim_whitespace=False, max_length=32)
    # Refused, not ignored: the application would wait for a code that is never sent.
    CustomCode = serializers.CharField(required=False, trim_whitespace=False)

    def validate_CustomCode(self, value: str) -> str:
        raise serializers.ValidationError("The service makes every code; CustomCode is not served.")

    def validate_Channel(self, value: str) -> str:
        if value not in CHANNELS_SERVED:
            raise serializers.ValidationError("Only the sms channel is served.")
        return CHANNEL_SMS

    def validate_Locale(self, value: str) -> str:
        # The OTP request's check (zeckta.locales), so that a tag either door accepts means the same text.
        normalised = locale_normalise(value)
        if normalised is None:
            raise serializers.ValidationError("Use a language tag such as en or pt-BR.")
        return normalised

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {**attrs, "transaction": transaction_of(attrs)}


class VerificationCheckSerializer(serializers.Serializer):
    Code = serializers.CharField(trim_whitespace=False, max_length=10)
    To = serializers.CharField(required=False, trim_whitespace=False, max_length=32)
    VerificationSid = serializers.CharField(required=False, trim_whitespace=False, max_length=34)
    Amount = _optional()
    Payee = _optional()

    def validate_Code(self, value: str) -> str:
        if not CODE_RE.fullmatch(value):
            raise serializers.ValidationError("The code must be 4 to 10 digits (0-9).")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "To" not in attrs and "VerificationSid" not in attrs:
            raise serializers.ValidationError({"To": ["Send To or VerificationSid."]})
        return {**attrs, "transaction": transaction_of(attrs)}


class VerificationUpdateSerializer(serializers.Serializer):
    # Twilio also takes `approved` (approve without a code): this service only approves a right code.
    Status = serializers.ChoiceField(choices=["canceled"])
