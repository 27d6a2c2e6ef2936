"""The Twilio Verify v2 door (API.md section 14): form-encoded Twilio requests in, Twilio's resources and
errors out. Each view validates, calls one service or selector of `otp` (through `twilioverify.services` where
Twilio's step is a choice between two of them), and draws the resource."""

import hmac
import logging
import uuid
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from otp import idempotency
from otp import selectors as otp_selectors
from otp import services as otp_services
from otp.errors import OtpSessionNotFound
from otp.models import Purpose, VerifyOutcome
from otp.serializers import OtpRequestInputSerializer
from senders.selectors import sender_name_default
from twilioverify import resources, selectors, services
from twilioverify.authentication import AccountKeyBasicAuthentication
from twilioverify.errors import INTERNAL_ERROR, MAX_CHECK_ATTEMPTS_ERROR, NOT_FOUND_ERROR, twilio_error
from twilioverify.parsers import BoundedFormParser
from twilioverify.serializers import (
    VerificationCheckSerializer,
    VerificationCreateSerializer,
    VerificationUpdateSerializer,
    session_id_of,
)
from workspaces.authentication import HasWorkspace
from workspaces.models import ApiKey, Workspace
from workspaces.throttling import ApiKeyRateThrottle
from zeckta.api.errors import HttpsRequired
from zeckta.api.handlers import error_answer
from zeckta.api.utils import validated
from zeckta.errors import NotFound, ValidationFailed

logger = logging.getLogger(__name__)

# The service's field names, as the Twilio parameter a client sent them in.
PARAMETERS = {
    "dest": "To",
    "appHash": "AppHash",
    "transaction": "Amount",
    "transaction.amount": "Amount",
    "transaction.currency": "Amount",
    "transaction.payee": "Payee",
}


def twilio_exception_handler(exc: Exception, context: dict) -> Response:
    """Every refusal in Twilio's error shape, mapped by the service's error code (twilioverify.errors)."""
    answer = error_answer(exc)
    headers: dict[str, str] = {}
    if answer is None:
        logger.exception("unhandled error in the Twilio Verify door")
        error = INTERNAL_ERROR
    else:
        error = twilio_error(code=answer.code, status=answer.status, message=_message(answer.message, answer.errors))
        headers.update(answer.headers)  # Retry-After
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    set_rollback()
    return Response(error.body(), status=error.status, headers=headers)


def _message(message: str, errors: dict[str, list[str]] | None) -> str:
    """Twilio names the parameter at fault: "Invalid parameter `To`: ..."."""
    if not errors:
        return message
    field, messages = next(iter(errors.items()))
    return f"Invalid parameter `{PARAMETERS.get(field, field)}`: {messages[0] if messages else message}"


class TwilioVerifyView(APIView):
    """The door's base: HTTP Basic with the account id and a key, the key's request rate, form bodies, and the
    service id of the URL checked against the key's workspace (another workspace's is 20404)."""

    authentication_classes = [AccountKeyBasicAuthentication]
    permission_classes = [HasWorkspace]
    throttle_classes = [ApiKeyRateThrottle]
    parser_classes = [BoundedFormParser]
    renderer_classes = [JSONRenderer]
    # Not in /openapi.json: the contract of these routes is Twilio's own API reference (docs/integrations/).
    schema = None
    # As ApiViewSet: the methods that spend money are refused (503) when the rate limiter cannot be asked.
    rate_limit_fail_closed: frozenset[str] = frozenset()
    action: str | None = None

    @property
    def api_key(self) -> ApiKey:
        return cast(ApiKey, self.request.auth)  # HasWorkspace has checked it is an ApiKey

    @property
    def workspace(self) -> Workspace:
        return self.api_key.workspace

    @property
    def is_test(self) -> bool:
        return self.api_key.is_test

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # As ApiEdgeMiddleware does for /v1/: a refusal, not a redirect (settings.SECURE_REDIRECT_EXEMPT).
        if settings.SECURE_SSL_REDIRECT and not request.is_secure():
            raise HttpsRequired()
        self.action = (request.method or "").lower()  # what ApiKeyRateThrottle reads rate_limit_fail_closed by
        super().initial(request, *args, **kwargs)  # authentication, permissions, then the rate limit
        # Bytes: compare_digest refuses str with non-ASCII characters, which a URL may hold.
        if not hmac.compare_digest(kwargs["service_sid"].encode(), self.workspace.service_sid.encode()):
            raise NotFound()

    def get_exception_handler(self) -> Callable[[Exception, dict], Response]:
        return twilio_exception_handler

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        for header, value in getattr(request, "rate_limit_headers", {}).items():
            response[header] = value
        return response

    def verification_body(self, session_id: uuid.UUID) -> dict:
        session = otp_selectors.otp_session_get(workspace=self.workspace, session_id=session_id, test=self.is_test)
        base_url = settings.PUBLIC_URL or self.request.build_absolute_uri("/").rstrip("/")
        return resources.verification(
            session,
            workspace=self.workspace,
            now=timezone.now(),
            attempts=selectors.send_attempts_list(session=session),
            base_url=base_url,
        )


class VerificationsView(TwilioVerifyView):
    """`POST /v2/Services/{ServiceSid}/Verifications`: a code by SMS to `To` (201 with the Verification)."""

    rate_limit_fail_closed = frozenset({"post"})

    def post(self, request: Request, service_sid: str) -> Response:
        form = validated(VerificationCreateSerializer, request.data)
        # The Supabase hook's rule too: one home for "the sender of a caller that names none".
        sender_name = sender_name_default(workspace=self.workspace)
        if sender_name is None:
            raise ValidationFailed("This service has no approved sender name to send from.")
        src = sender_name.name
        transaction = form["transaction"]
        # The OTP request's own validation: To as `dest` (E.164, the country list), AppHash, the transaction.
        request_data = validated(
            OtpRequestInputSerializer,
            {
                "dest": form["To"],
                "src": src,
                "purpose": Purpose.TRANSACTION if transaction else Purpose.LOGIN,
                "appHash": form.get("AppHash"),
                "transaction": transaction.as_dict() if transaction else None,
                "locale": form.get("Locale"),
            },
        )

        def perform() -> tuple[int, dict]:
            session_id = services.verification_start(
                workspace=self.workspace,
                dest=request_data["dest"],
                src=request_data["src"],
                purpose=request_data["purpose"],
                transaction=request_data.get("transaction"),
                app_hash=request_data.get("appHash"),
                locale=request_data.get("locale"),
                test=self.is_test,
                actor=f"api:{self.api_key.prefix}",
            )
            return 201, self.verification_body(session_id)

        idempotency_key = request.headers.get("Idempotency-Key")
        if idempotency_key is None:
            status, body = perform()
            return Response(body, status=status)
        problem = idempotency.key_problem(idempotency_key)
        if problem:
            raise ValidationFailed.for_field("Idempotency-Key", problem)
        payload = {"twilio": "verification", **{name: form.get(name) for name in ("To", "Amount", "Payee", "AppHash")}}
        answer = idempotency.run_idempotent(
            workspace=self.workspace, key=idempotency_key, payload=payload, perform=perform, test=self.is_test
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        return Response(answer.body, status=answer.status, headers=headers)


class VerificationCheckView(TwilioVerifyView):
    """`POST /v2/Services/{ServiceSid}/VerificationCheck`: a code for `VerificationSid`, or for the pending
    Verification of `To`."""

    def post(self, request: Request, service_sid: str) -> Response:
        form = validated(VerificationCheckSerializer, request.data)
        session_id = None
        if "VerificationSid" in form:
            session_id = session_id_of(form["VerificationSid"])
            if session_id is None:
                raise OtpSessionNotFound()
        result = services.verification_check(
            workspace=self.workspace,
            code=form["Code"],
            dest=form.get("To"),
            session_id=session_id,
            transaction=form["transaction"],
            test=self.is_test,
        )
        # Answers, not exceptions: a wrong code's used attempt stays committed whatever wraps the request.
        if result.outcome == VerifyOutcome.MAX_ATTEMPTS_REACHED:
            return Response(MAX_CHECK_ATTEMPTS_ERROR.body(), status=MAX_CHECK_ATTEMPTS_ERROR.status)
        if result.outcome not in (VerifyOutcome.APPROVED, VerifyOutcome.INVALID):
            # Approved, expired, canceled or unknown: for Twilio there is no pending Verification to check.
            return Response(NOT_FOUND_ERROR.body(), status=NOT_FOUND_ERROR.status)
        session = otp_selectors.otp_session_get(
            workspace=self.workspace, session_id=result.session_id, test=self.is_test
        )
        body = resources.verification_check(
            session,
            workspace=self.workspace,
            now=timezone.now(),
            attempts=selectors.send_attempts_list(session=session),
        )
        return Response(body)


class VerificationView(TwilioVerifyView):
    """`GET /v2/Services/{ServiceSid}/Verifications/{Sid}`; `POST` with `Status=canceled` cancels it."""

    def _session_id(self, sid: str) -> uuid.UUID:
        session_id = session_id_of(sid)
        if session_id is None:
            raise OtpSessionNotFound()
        return session_id

    def get(self, request: Request, service_sid: str, sid: str) -> Response:
        return Response(self.verification_body(self._session_id(sid)))

    def post(self, request: Request, service_sid: str, sid: str) -> Response:
        session_id = self._session_id(sid)
        validated(VerificationUpdateSerializer, request.data)
        otp_services.otp_cancel(workspace=self.workspace, session_id=session_id, test=self.is_test)
        return Response(self.verification_body(session_id))


@csrf_exempt  # Twilio clients send no CSRF token; an unknown route must answer 404, not a CSRF 403
def unknown_route(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any other path under /v2/ answers as Twilio answers an unknown resource."""
    return JsonResponse(NOT_FOUND_ERROR.body(), status=NOT_FOUND_ERROR.status)
