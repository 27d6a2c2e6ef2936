import math
import re
from datetime import UTC, datetime

from rest_framework import serializers

from otp import templating
from otp.models import OtpSession, Purpose, SmsMessage

# ASCII digits only: `\d` would also take "123456\n" and Arabic-Indic digits.
CODE_RE = re.compile(r"[0-9]{4,10}")


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers, booleans and other JSON types instead of coercing them."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class OtpRequestInputSerializer(serializers.Serializer):
    dest = StrictCharField(max_length=20, trim_whitespace=False)
    src = StrictCharField(max_length=16, trim_whitespace=False)
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    messageTemplate = StrictCharField(required=False, allow_null=True, trim_whitespace=False, max_length=1000)

    def validate_messageTemplate(self, value: str | None) -> str | None:
        if value is None:
            return None
        problems = templating.template_errors(value)
        if problems:
            raise serializers.ValidationError(problems)
        return value


class OtpVerifyInputSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField(format="hex_verbose")
    code = StrictCharField(trim_whitespace=False, max_length=10)

    def validate_sessionId(self, value):
        if not isinstance(self.initial_data.get("sessionId"), str):
            raise serializers.ValidationError("Must be a valid UUID.")
        return value

    def validate_code(self, value: str) -> str:
        if not CODE_RE.fullmatch(value):
            raise serializers.ValidationError("The code must be 4 to 10 digits (0-9).")
        return value


def seconds_left(session: OtpSession, now: datetime) -> int:
    # Rounded up: a session issued this instant reports its full validity (300, not 299).
    return max(math.ceil((session.expires_at - now).total_seconds()), 0)


def public_status(session: OtpSession, now: datetime) -> str:
    """A pending session past its expiry is EXPIRED to the client even before anything writes that."""
    if session.status == OtpSession.Status.PENDING and session.expires_at <= now:
        return OtpSession.Status.EXPIRED
    return session.status


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_data(session: OtpSession, *, reused: bool, now: datetime) -> dict:
    return {
        "sessionId": str(session.public_id),
        "expiresInSeconds": seconds_left(session, now),
        "attemptsLeft": session.attempts_left,
        "reused": reused,
    }


def verify_data(session: OtpSession, *, status: str, verified: bool) -> dict:
    return {
        "sessionId": str(session.public_id),
        "status": status,
        "verified": verified,
        "attemptsLeft": session.attempts_left,
    }


def session_data(session: OtpSession, *, now: datetime) -> dict:
    sms = getattr(session, "sms", None)
    delivery = None
    if sms is not None:
        delivery = {
            "status": sms.status,
            "segments": sms.segments,
            "units": sms.units,
            "attempts": sms.attempts,
            "updatedAt": iso(sms.updated_at),
        }
    return {
        "sessionId": str(session.public_id),
        "dest": session.dest,
        "src": session.src,
        "purpose": session.purpose,
        "status": public_status(session, now),
        "expiresInSeconds": seconds_left(session, now),
        "attemptsLeft": session.attempts_left,
        "createdAt": iso(session.created_at),
        "verifiedAt": iso(session.verified_at),
        "delivery": delivery,
    }


# --- Output shapes (the `data` of each answer). The views fill them from the dicts above, so the
# OpenAPI document and the real answers come from the same field lists.


class OtpRequestDataSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField()
    expiresInSeconds = serializers.IntegerField(min_value=0)
    attemptsLeft = serializers.IntegerField(min_value=0)
    reused = serializers.BooleanField()


class OtpVerifyDataSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=["APPROVED", "INVALID", "EXPIRED", "MAX_ATTEMPTS_REACHED", "ALREADY_USED"]
    )
    verified = serializers.BooleanField()
    attemptsLeft = serializers.IntegerField(min_value=0)


class DeliverySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SmsMessage.Status.values)
    segments = serializers.IntegerField(min_value=1)
    units = serializers.IntegerField(min_value=1)
    attempts = serializers.IntegerField(min_value=0, help_text="Calls made to the SMS gateway.")
    updatedAt = serializers.CharField()


class OtpSessionDataSerializer(serializers.Serializer):
    sessionId = serializers.UUIDField()
    dest = serializers.CharField()
    src = serializers.CharField()
    purpose = serializers.ChoiceField(choices=Purpose.values)
    status = serializers.ChoiceField(choices=OtpSession.Status.values)
    expiresInSeconds = serializers.IntegerField(min_value=0)
    attemptsLeft = serializers.IntegerField(min_value=0)
    createdAt = serializers.CharField()
    verifiedAt = serializers.CharField(allow_null=True)
    delivery = DeliverySerializer(allow_null=True)
