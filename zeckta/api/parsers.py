import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from rest_framework.parsers import JSONParser

from zeckta.api.errors import MalformedJson, PayloadTooLarge


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _deeper_than(value: Any, limit: int) -> bool:
    """True when objects and arrays nest more than `limit` levels (the outermost is level 1)."""
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:
        item, depth = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        level.extend((child, depth + 1) for child in children)
    return False


class JsonObjectParser(JSONParser):
    """Strict JSON: a size-capped body that must decode to an object (no NaN/Infinity), nested no deeper
    than API_MAX_JSON_DEPTH levels."""

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> dict:
        limit = settings.API_MAX_BODY_BYTES
        # Read one byte past the cap: enough to know it is too large without buffering it all.
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body must be at most {limit} bytes.")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: thousands of levels
            raise MalformedJson() from None
        if not isinstance(data, dict):
            raise MalformedJson("The request body must be a JSON object.")
        if _deeper_than(data, settings.API_MAX_JSON_DEPTH):
            raise MalformedJson(f"The request body nests deeper than {settings.API_MAX_JSON_DEPTH} levels.")
        return data
