"""Serializer fields shared by every app's API: strict types and the contract's time format."""

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


def iso(value: datetime | None) -> str | None:
    """`2026-06-09T18:00:00Z`: UTC, whole seconds, as API.md says."""
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers, booleans and other JSON types instead of coercing them."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.DATETIME)
class IsoDateTimeField(serializers.Field):
    """A timestamp as `iso()` writes it."""

    def to_representation(self, value: datetime | None) -> str | None:
        return iso(value)


@extend_schema_field({"type": "string", "nullable": True})
class BlankAsNullField(serializers.CharField):
    """An empty text column is `null` to the client: there is no value, not an empty one."""

    # CharField's stub fixes the output to str; null for blank is the point of this field.
    def to_representation(self, value: str) -> str | None:  # type: ignore[override]
        return value or None
