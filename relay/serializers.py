import unicodedata
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from otp.models import Purpose, SmsMessage
from otp.relay import RELAY_TEXT_MAX_CHARS
from otp.serializers import DeliverySerializer
from relay.hooks import hook_url
from zeckta.api.fields import IsoDateTimeField, StrictCharField


class RelayInputSerializer(serializers.Serializer):
    dest = StrictCharField(max_length=20, trim_whitespace=False, help_text="E.164, e.g. +233202007745.")
    src = StrictCharField(max_length=16, trim_whitespace=False, help_text="An APPROVED sender name of yours.")
    text = StrictCharField(
        trim_whitespace=False,
        max_length=RELAY_TEXT_MAX_CHARS,
        help_text="The whole SMS, 1 to 612 characters, code included; no Unicode format characters (Cf).",
    )
    purpose = serializers.ChoiceField(
        choices=Purpose.choices, required=False, allow_null=True, help_text="What the code is for, when it is one."
    )

    def validate_text(self, value: str) -> str:
        # What the phone shows: nothing that hides or reorders text (bidi overrides, zero-width characters).
        if any(unicodedata.category(character) == "Cf" for character in value):
            raise serializers.ValidationError("Unicode format characters (bidi overrides, zero-width) are refused.")
        return value


class RelayQueuedSerializer(serializers.Serializer):
    """The `SmsMessage` a relay just queued. `status` is `queued` whatever the key's mode: a test SMS goes
    to the test inbox, where GET shows it `delivered`."""

    messageId = serializers.UUIDField(source="public_id")
    segments = serializers.IntegerField(min_value=1)
    units = serializers.IntegerField(min_value=1, help_text="What the SMS costs: equal to `segments`.")
    status = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=[SmsMessage.Status.QUEUED.value]))
    def get_status(self, message: SmsMessage) -> str:
        return SmsMessage.Status.QUEUED


class RelayedSmsSerializer(DeliverySerializer):
    """A relayed `SmsMessage`: the delivery view of an OTP session (API.md section 4) with its id and ends."""

    messageId = serializers.UUIDField(source="public_id")
    dest = serializers.CharField(source="to")
    src = serializers.CharField()
    purpose = serializers.SerializerMethodField()
    createdAt = IsoDateTimeField(source="created_at")

    @extend_schema_field(serializers.ChoiceField(choices=Purpose.values, allow_null=True))
    def get_purpose(self, message: SmsMessage) -> str | None:
        return message.purpose or None

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        first = ("messageId", "dest", "src", "purpose")
        return {**{name: data[name] for name in first}, **{k: v for k, v in data.items() if k not in first}}


class SupabaseHookSerializer(serializers.Serializer):
    """A `SupabaseHook`; the view passes {"base_url": ...} for its URL when PUBLIC_URL is not set."""

    hookId = serializers.UUIDField(source="public_id")
    url = serializers.SerializerMethodField(help_text="Paste it into Supabase (Auth Hooks, Send SMS, HTTPS).")
    createdAt = IsoDateTimeField(source="created_at")

    def get_url(self, hook: Any) -> str:
        return hook_url(hook, base_url=self.context["base_url"])


class SupabaseHookWithSecretSerializer(SupabaseHookSerializer):
    """A `HookWithSecret`: the hook, and its secret this once."""

    secret = serializers.CharField(help_text="v1,whsec_<base64>: paste it into Supabase. It is not shown again.")

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return {**SupabaseHookSerializer(instance.hook, context=self.context).data, "secret": instance.secret}
