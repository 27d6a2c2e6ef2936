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


class FieldsCopiedShallow(serializers.Serializer):
    """A serializer whose instances take shallow copies of its declared fields.

    DRF deep-copies every declared field (nested serializers and their fields included) for every
    serializer it makes: on the OTP hot paths that was a third of a reused request's time in the web
    process (`make profile --cprofile`: 0.7 ms of 2.3). The declared fields are prototypes that nothing
    binds or changes; what a request changes on its copy (bind: name, parent, source; a nested serializer's
    own fields, built on first use) is set on the copy, so sharing the rest is safe. Not for serializers
    with a ListField or a `many=True` child: those bind their child once, at construction.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        return {name: _shallow_copy(field) for name, field in self._declared_fields.items()}


def _shallow_copy(field: serializers.Field) -> serializers.Field:
    """What `copy.copy(field)` makes (a new instance of its class holding the same attributes) without its
    round trip through `__reduce_ex__` and copyreg: 1 us a field instead of 5, and a request's serializers
    copy about 15 of them. DRF's fields define neither `__copy__` nor `__slots__`, the two things that trip
    would have honoured."""
    clone = object.__new__(type(field))
    clone.__dict__.update(field.__dict__)
    return clone
