from typing import Any

import phonenumbers
from rest_framework import serializers

from senders.models import SenderName
from senders.selectors import SenderNamePage
from senders.services import sender_name_problem
from zeckta.api.fields import BlankAsNullField, IsoDateTimeField, StrictCharField

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100  # a larger pageSize is served as this many items (the answer's pageSize says so)


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


class PageQuerySerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1)
    pageSize = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE)

    def validate(self, attrs: dict) -> dict:
        # A misspelt parameter (`page_size`) silently ignored would hide a client bug.
        problems = {name: ["Unknown query parameter."] for name in set(self.initial_data) - set(self.fields)}
        # A query string turns `?page=` into "", which DRF would quietly read as "not given".
        problems.update({name: ["A valid integer is required."] for name in self.fields
                         if self.initial_data.get(name) == ""})
        if problems:
            raise serializers.ValidationError(problems)
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


class SenderNamePageOutputSerializer(serializers.Serializer):
    items = SenderNameOutputSerializer(many=True)
    page = serializers.IntegerField()
    pageSize = serializers.IntegerField()
    total = serializers.IntegerField()
    totalPages = serializers.IntegerField()


def sender_name_page_data(result: SenderNamePage, *, page: int, page_size: int) -> dict[str, Any]:
    return SenderNamePageOutputSerializer({
        "items": result.items,
        "page": page,
        "pageSize": page_size,
        "total": result.total,
        "totalPages": -(-result.total // page_size),  # ceiling division
    }).data
