from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import QueryDict
from rest_framework.parsers import FormParser

from zeckta.api.errors import PayloadTooLarge

if TYPE_CHECKING:  # the stubs' name for what QueryDict(...) makes
    from django.http.request import _ImmutableQueryDict


class BoundedFormParser(FormParser):
    """Twilio's form-encoded parameters, with the body capped at API_MAX_BODY_BYTES as /v1/'s JSON is
    (ApiEdgeMiddleware guards /v1/ only): read one byte past the cap, never the whole of a large body."""

    def parse(
        self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> "_ImmutableQueryDict":
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body must be at most {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        return QueryDict(raw, encoding=encoding)
