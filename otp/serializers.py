import math
import re
from datetime import datetime
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from otp.models import OtpSession, Purpose, SmsMessage
from otp.services import VerifyOutcome
from zeckta import sms_text
from zeckta.api.fields import BlankAsNullField, IsoDateTimeField, StrictCharField
from zeckta.sms_text import template_errors

# ASCII digits only: `\d` would also take "123456\n" and Arabic-Indic digits.
CODE_RE = re.compile(r"[0-9]{4,10}")


class OtpRequestInputSerializer(serializers.Serializer):
    dest = StrictCharField(max_length=20, trim_whitespace=False)
    src = StrictCharField(max_length=16, trim_whitespace=False)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    messageTemplate = StrictCharField(required=False, allow_null=True, trim_whitespace=False, max_length=1000)
    appHash = StrictCharField(
        required=False, allow_null=True, trim_whitespace=False, max_length=11,
        help_text="Android SMS Retriever: the app's 11-character hash, put on its own line after the text.",
    )
    webOtpDomain = StrictCharField(
        required=False, allow_null=True, trim_whitespace=False, max_length=sms_text.WEB_OTP_DOMAIN_MAX_CHARS,
        help_text="WebOTP: the SMS ends with the line `@<domain> #<code>`, which browsers fill in on that origin.",
    )

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
        problems = template_errors(value)
        if problems:
            raise serializers.ValidationError(problems)
        return value


class OtpVerifyInputSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField(format="hex_verbose")
    code = StrictCharField(trim_whitespace=False, max_length=10)

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
        return max(math.ceil((value - self.context["now"]).total_seconds()), 0)


# --- Output shapes (the `data` of each answer), read from the session and the service's results; the
# OpenAPI document and the real answers come from the same field lists. The views pass {"now": ...}.


class OtpRequestDataSerializer(serializers.Serializer):
    """An `OtpRequestResult`."""

    sessionId = serializers.UUIDField(source="session_id")
    expiresInSeconds = SecondsUntilField(source="expires_at")
    attemptsLeft = serializers.IntegerField(source="attempts_left", min_value=0)
    reused = serializers.BooleanField()


class OtpVerifyDataSerializer(serializers.Serializer):
    """A `VerifyResult`."""

    sessionId = serializers.UUIDField(source="session_id")
    status = serializers.ChoiceField(source="outcome", choices=VerifyOutcome.choices)
    verified = serializers.BooleanField()
    attemptsLeft = serializers.IntegerField(source="attempts_left", min_value=0)


class DeliverySerializer(serializers.Serializer):
    """An `SmsMessage`."""

    status = serializers.ChoiceField(choices=SmsMessage.Status.values)
    segments = serializers.IntegerField(min_value=1)
    units = serializers.IntegerField(min_value=1)
    attempts = serializers.IntegerField(min_value=0, help_text="Calls made to the SMS gateway.")
    updatedAt = IsoDateTimeField(source="updated_at")
    route = BlankAsNullField(source="route_name", help_text="The provider route that carried the latest send.")
    deliveredAt = IsoDateTimeField(source="delivered_at", allow_null=True,
                                   help_text="When its delivery receipt said it arrived; null until then.")


class OtpSessionDataSerializer(serializers.Serializer):
    """An `OtpSession`, with its SMS (`delivery` is null while it has none)."""

    sessionId = serializers.UUIDField(source="public_id")
    dest = serializers.CharField()
    src = serializers.CharField()
    purpose = serializers.ChoiceField(choices=Purpose.values)
    status = serializers.SerializerMethodField()
    expiresInSeconds = SecondsUntilField(source="expires_at")
    attemptsLeft = serializers.IntegerField(source="attempts_left", min_value=0)
    createdAt = IsoDateTimeField(source="created_at")
    verifiedAt = IsoDateTimeField(source="verified_at", allow_null=True)
    # DRF reads a missing reverse one-to-one as None.
    delivery = DeliverySerializer(source="sms", allow_null=True)

    @extend_schema_field(serializers.ChoiceField(choices=OtpSession.Status.values))
    def get_status(self, session: OtpSession) -> str:
        """A pending session past its expiry is EXPIRED to the client even before anything writes that."""
        if session.status == OtpSession.Status.PENDING and session.expires_at <= self.context["now"]:
            return OtpSession.Status.EXPIRED
        return session.status
