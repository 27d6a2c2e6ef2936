"""The block view of API.md section 13: the same JSON in `GET /v1/messaging/fraud/blocks` and in the
`fraud.blocked` webhook event."""

from rest_framework import serializers

from fraud.models import FraudBlock
from zeckta.api.fields import IsoDateTimeField


class FraudEvidenceSerializer(serializers.Serializer):
    """What tripped the rule, counted when it tripped."""

    sessions = serializers.IntegerField(help_text="Sessions the rule judged (velocity: one per number asked for).")
    converted = serializers.IntegerField(help_text="Of them, approved.")
    numbers = serializers.IntegerField(help_text="Distinct numbers among them.")


class FraudBlockSerializer(serializers.Serializer):
    """A `FraudBlock`: a block (mode `enforce`) or a shadow decision (mode `shadow`)."""

    blockId = serializers.UUIDField(source="public_id")
    scope = serializers.ChoiceField(choices=FraudBlock.Scope.values)
    value = serializers.CharField(help_text='The range ("+233204123": its numbers 000 to 999) or the country ("GH").')
    rule = serializers.ChoiceField(choices=FraudBlock.Rule.values)
    mode = serializers.ChoiceField(choices=FraudBlock.Mode.values)
    createdAt = IsoDateTimeField(source="created_at")
    endsAt = IsoDateTimeField(source="ends_at")
    liftedAt = IsoDateTimeField(source="lifted_at", allow_null=True)
    evidence = FraudEvidenceSerializer()
