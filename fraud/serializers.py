"""The block view of API.md section 13: the answers of /fraud/blocks and the data of `fraud.blocked`."""

# placeholder until fcore lands: fcore's module; the lead keeps fcore's version on merge.

from rest_framework import serializers

from fraud.models import FraudBlock
from zeckta.api.fields import IsoDateTimeField


class FraudBlockSerializer(serializers.Serializer):  # placeholder until fcore lands
    blockId = serializers.UUIDField(source="public_id")
    scope = serializers.ChoiceField(choices=FraudBlock.Scope.choices)
    value = serializers.CharField()
    rule = serializers.ChoiceField(choices=FraudBlock.Rule.choices)
    mode = serializers.ChoiceField(choices=FraudBlock.Mode.choices)
    createdAt = IsoDateTimeField(source="created_at")
    endsAt = IsoDateTimeField(source="ends_at")
    liftedAt = IsoDateTimeField(source="lifted_at", allow_null=True)
    evidence = serializers.DictField(child=serializers.IntegerField())
