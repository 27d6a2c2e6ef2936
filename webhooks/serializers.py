from typing import Any

from rest_framework import serializers

from webhooks.models import WEBHOOK_URL_MAX_LENGTH, Event
from webhooks.services import EndpointWithSecret, events_problem
from webhooks.transport import url_problem
from zeckta.api.fields import IsoDateTimeField, StrictCharField
from zeckta.api.pages import PageOutputSerializer

MAX_EVENTS_LISTED = 20  # names in one `events` list, repeats included (there are 7 events)


class WebhookEndpointInputSerializer(serializers.Serializer):
    # Not trimmed: the URL is called exactly as given.
    url = StrictCharField(max_length=WEBHOOK_URL_MAX_LENGTH, trim_whitespace=False)
    events = serializers.ListField(
        child=StrictCharField(max_length=40),
        allow_empty=False,
        max_length=MAX_EVENTS_LISTED,
        help_text=f"One or more of {', '.join(Event.values)}.",
    )

    # The service's rules, applied here too so that each problem is reported under its field.
    def validate_url(self, value: str) -> str:
        problem = url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate_events(self, value: list[str]) -> list[str]:
        problem = events_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return list(dict.fromkeys(value))


class WebhookEndpointOutputSerializer(serializers.Serializer):
    webhookId = serializers.UUIDField(source="public_id")
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=Event.values))
    createdAt = IsoDateTimeField(source="created_at")
    failing = serializers.BooleanField(
        help_text="A delivery was given up after 24 h of retries; the next delivery that succeeds clears it."
    )


class WebhookEndpointWithSecretSerializer(WebhookEndpointOutputSerializer):
    """The answer of a creation or a rotation: the only ones that show the secret."""

    secret = serializers.CharField(help_text="`whsec_` + base64: the signing secret. Shown this once; store it.")

    def to_representation(self, instance: EndpointWithSecret) -> dict[str, Any]:
        return {**WebhookEndpointOutputSerializer(instance.endpoint).data, "secret": instance.secret}


class WebhookEndpointPageOutputSerializer(PageOutputSerializer):
    items = WebhookEndpointOutputSerializer(many=True)
