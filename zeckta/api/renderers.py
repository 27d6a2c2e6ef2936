from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import JSONRenderer

from zeckta.api.context import request_id_var


class EnvelopeJSONRenderer(JSONRenderer):
    """Adds the request's `requestId` to every envelope (bodies that carry `success`)."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if isinstance(data, dict) and "success" in data:
            data = {**data, "requestId": request_id_var.get()}
        return super().render(data, accepted_media_type, renderer_context)
