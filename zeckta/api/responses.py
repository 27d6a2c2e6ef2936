"""Building the success envelope, and the envelope for responses made outside DRF."""

from typing import Any

from django.http import JsonResponse

from zeckta.api.context import request_id_var
from zeckta.api.errors import error_body


def envelope(message: str, data: Any = None) -> dict[str, Any]:
    return {"success": True, "message": message, "data": data}


def json_error_response(*, status: int, message: str, code: str) -> JsonResponse:
    """An error envelope for responses Django makes itself (unknown routes, unhandled errors)."""
    body = {**error_body(message=message, code=code), "requestId": request_id_var.get()}
    return JsonResponse(body, status=status)
