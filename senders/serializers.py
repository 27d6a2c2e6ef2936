import phonenumbers
from rest_framework import serializers

from senders.models import SenderName
from senders.services import sender_name_problem
from zeckta.api.fields import BlankAsNullField, IsoDateTimeField, StrictCharField
from zeckta.api.pages import PageOutputSerializer


class SenderNameInputSerializer(serializers.Serializer):
    """The body of POST and PUT: PUT replaces the whole request, so it takes the same fields."""

    # Not trimmed: the sender is matched exactly against an OTP request's `src`.
    sender = StrictCharField(max_length=16, trim_whitespace=False)
    senderType = serializers.ChoiceField(choices=SenderName.Type.choices)
    purpose = StrictCharField(max_length=500)
    countryCode = StrictCharField(required=False, allow_null=True, allow_blank=True, max_length=2)

    def validate_countryCode(self, value: str | None) -> str:
        if not value:
            return ""
        code = value.upper()
        if code not in phonenumbers.SUPPORTED_REGIONS:
            raise serializers.ValidationError("An ISO 3166 alpha-2 country code, such as GH.")
        return code

    def validate(self, attrs: dict) -> dict:
        # The service's rule, applied here too so the problem is reported as errors.sender.
        problem = sender_name_problem(attrs["sender"], attrs["senderType"])
        if problem:
            raise serializers.ValidationError({"sender": [problem]})
        return attrs


class SenderNameOutputSerializer(serializers.Serializer):
    senderNameId = serializers.UUIDField(source="public_id")
    sender = serializers.CharField(source="name")
    senderType = serializers.ChoiceField(source="sender_type", choices=SenderName.Type.choices)
    purpose = serializers.CharField()
    countryCode = BlankAsNullField(source="country_code")
    status = serializers.ChoiceField(choices=SenderName.Status.choices)
    statusReason = BlankAsNullField(source="status_reason")
    submittedAt = IsoDateTimeField(source="submitted_at")
    approvedAt = IsoDateTimeField(source="approved_at", allow_null=True)


class SenderNamePageOutputSerializer(PageOutputSerializer):
    items = SenderNameOutputSerializer(many=True)
