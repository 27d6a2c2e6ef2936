"""`POST /hooks/supabase/{hookId}`: Supabase Auth's Send SMS hook (API.md section 14), outside /v1/.

No Bearer key and no envelope: Supabase signs the call (Standard Webhooks) and reads its own answer
shapes, 200 `{}` when the SMS is queued and `{"error": {"http_code", "message"}}` for every refusal, with
the status section 1 gives it; 429 and 503 carry Retry-After, and Supabase retries them.
"""

import logging
import uuid

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from relay.hooks import supabase_sms_send
from zeckta.errors import ApplicationError, ServiceUnavailable

logger = logging.getLogger(__name__)

BODY_MAX_BYTES = 64 * 1024  # as a /v1/ body (API.md section 1)


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"error": {"http_code": status, "message": message}}, status=status, headers=headers)


@csrf_exempt
def supabase_send_sms(request: HttpRequest, hook_id: uuid.UUID) -> JsonResponse:
    if request.method != "POST":
        return _refusal(405, "Use POST.", {"Allow": "POST"})
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit() or int(declared) > BODY_MAX_BYTES:
        return _refusal(413, f"The body is larger than {BODY_MAX_BYTES} bytes.")
    body = request.read(BODY_MAX_BYTES + 1)
    if len(body) > BODY_MAX_BYTES:
        return _refusal(413, f"The body is larger than {BODY_MAX_BYTES} bytes.")
    try:
        answer = supabase_sms_send(hook_id=hook_id, body=body, headers=dict(request.headers))
    except ApplicationError as exc:
        logger.warning("Supabase hook %s refused: %s %s", hook_id, exc.status_code, exc.code)
        return _refusal(exc.status_code, exc.message, exc.headers)
    except DatabaseError:
        logger.exception("Supabase hook %s: the database failed", hook_id)
        unavailable = ServiceUnavailable()
        return _refusal(unavailable.status_code, unavailable.message, unavailable.headers)
    return JsonResponse(answer.body, status=answer.status)
