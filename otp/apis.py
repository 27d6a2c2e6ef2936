import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from fraud.errors import DestinationBlocked
from otp import idempotency, selectors, services
from otp.errors import (
    DestinationRateLimited,
    IdempotencyKeyReused,
    OtpExpired,
    OtpSessionNotFound,
    ReceiptForbidden,
    ReceiptTooLarge,
    ResendLimitReached,
    ResendTooSoon,
    SessionNotPending,
    WorkspaceQuotaExceeded,
)
from otp.models import VerifyOutcome
from otp.receipts import RECEIPTS_PER_REQUEST_MAX, receipts_apply
from otp.serializers import (
    InboxMessageSerializer,
    InboxQuerySerializer,
    OtpRequestDataSerializer,
    OtpRequestInputSerializer,
    OtpResendDataSerializer,
    OtpResendInputSerializer,
    OtpSessionDataSerializer,
    OtpVerifyDataSerializer,
    OtpVerifyInputSerializer,
)
from senders.gateways import GatewayError, ReceiptInvalid, ReceiptRejected, ReceiptRequest
from senders.routes import route_choice
from workspaces.authentication import HasWorkspace, HoldsTestKey
from workspaces.errors import InsufficientBalance
from workspaces.models import Workspace
from workspaces.viewsets import WorkspaceViewSet
from zeckta import metrics
from zeckta.api.errors import MalformedJson, PayloadTooLarge, error_body
from zeckta.api.handlers import error_answer
from zeckta.api.responses import envelope
from zeckta.api.schema import COMMON_ERRORS, DESTINATION_BLOCKED, error_envelope, error_responses, example
from zeckta.api.schema import envelope as envelope_schema
from zeckta.api.utils import validated
from zeckta.errors import ServiceUnavailable, ValidationFailed
from zeckta.metrics import RequestOutcome

logger = logging.getLogger(__name__)

MESSAGE_SENT = "OTP sent successfully"
MESSAGE_REUSED = "Active OTP already exists. No new SMS sent."
MESSAGE_RESENT = "OTP resent successfully"

# Verify outcome -> (HTTP status, message). A failed verify's error `code` equals its status.
VERIFY_OUTCOMES = {
    VerifyOutcome.APPROVED: (status.HTTP_200_OK, "OTP verified successfully"),
    VerifyOutcome.INVALID: (status.HTTP_400_BAD_REQUEST, "Invalid OTP code."),
    VerifyOutcome.EXPIRED: (status.HTTP_410_GONE, "OTP has expired."),
    VerifyOutcome.MAX_ATTEMPTS_REACHED: (status.HTTP_423_LOCKED, "Maximum verification attempts reached."),
    VerifyOutcome.ALREADY_USED: (status.HTTP_409_CONFLICT, "OTP has already been used."),
    VerifyOutcome.CANCELED: (status.HTTP_410_GONE, "OTP has been canceled."),
    VerifyOutcome.NOT_FOUND: (status.HTTP_404_NOT_FOUND, "OTP session not found."),
}
MESSAGE_VERIFIED = VERIFY_OUTCOMES[VerifyOutcome.APPROVED][1]

# What an OTP request or resend may be refused with, past authentication and the key's rate: each refusal
# counts under its code in zeckta_otp_requests_total, and these codes are exported at 0 from the start.
UNEXPECTED_REFUSAL = "INTERNAL_ERROR"  # an exception the API does not map: answered 500
REQUEST_REFUSAL_CODES = (
    *(
        error.code
        for error in (
            ValidationFailed,
            InsufficientBalance,
            DestinationRateLimited,
            DestinationBlocked,
            WorkspaceQuotaExceeded,
            IdempotencyKeyReused,
            SessionNotPending,
            ResendLimitReached,
            ResendTooSoon,
            OtpExpired,
            OtpSessionNotFound,
            ServiceUnavailable,
        )
    ),
    *(str(error.default_code) for error in (MalformedJson, PayloadTooLarge)),  # parsing the body
    UNEXPECTED_REFUSAL,
)
MESSAGE_CANCELED = "OTP session canceled"

SESSION_ID = "feab6011-2469-4804-ace5-ee9dcb5b9ef2"
TRANSACTION = {"amount": "125.50", "currency": "GHS", "payee": "Acme Shop"}
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    idempotency.KEY_SCHEMA,
    OpenApiParameter.HEADER,
    required=False,
    description="1 to 255 printable ASCII characters, scoped to the workspace: the same key with the same "
    "body within 24 hours replays the first answer (header `Idempotent-Replayed: true`).",
)
# `data` is the outcome for INVALID/EXPIRED/...; null for VALIDATION_ERROR and MALFORMED_JSON.
VERIFY_FAILED = error_envelope("VerifyFailedEnvelope", OtpVerifyDataSerializer(allow_null=True))


@extend_schema(tags=["otp"])
class OtpViewSet(WorkspaceViewSet):
    """POST request, POST verify, GET one session: validate, call one service or selector, serialize."""

    # Sending costs money: never without the limiter. Verify is guarded by the attempt counter in the DB.
    rate_limit_fail_closed = frozenset({"request_otp", "resend"})

    @extend_schema(
        operation_id="otp_request",
        summary="Send an OTP by SMS",
        description="Generates a code and sends it to `dest` from the sender name `src`, or, with reuse on, "
        "answers with the still-valid session for the same destination and purpose (no new SMS). "
        "An optional `Idempotency-Key` header makes retries safe for 24 hours.",
        request=OtpRequestInputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            200: envelope_schema("OtpRequestEnvelope", OtpRequestDataSerializer()),
            **error_responses(*COMMON_ERRORS, 402, 409, 503, overrides=DESTINATION_BLOCKED),
        },
        examples=[
            example("Request", {"dest": "+233202007745", "src": "ZECKTA", "purpose": "LOGIN"}, request=True),
            example(
                "Request with autofill",
                {
                    "dest": "+233202007745",
                    "src": "ZECKTA",
                    "purpose": "LOGIN",
                    "appHash": "FA+9qCX9VSu",
                    "webOtpDomain": "example.com",
                },
                request=True,
            ),
            example(
                "Request bound to a payment",
                {"dest": "+233202007745", "src": "ZECKTA", "purpose": "TRANSACTION", "transaction": TRANSACTION},
                request=True,
            ),
            example(
                "New session",
                {
                    "success": True,
                    "message": MESSAGE_SENT,
                    "data": {
                        "sessionId": SESSION_ID,
                        "expiresInSeconds": 300,
                        "attemptsLeft": 5,
                        "reused": False,
                        "resendAvailableInSeconds": 30,
                    },
                    "requestId": "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01",
                },
            ),
            example(
                "Reused session",
                {
                    "success": True,
                    "message": MESSAGE_REUSED,
                    "data": {
                        "sessionId": SESSION_ID,
                        "expiresInSeconds": 143,
                        "attemptsLeft": 5,
                        "reused": True,
                        "resendAvailableInSeconds": 0,
                    },
                    "requestId": "4f0e8a52-2b1d-4a8e-8f3c-9d7e6c5b4a32",
                },
            ),
        ],
    )
    @action(detail=False, methods=["post"], url_path="request")
    def request_otp(self, request: Request) -> Response:
        with _refusals_counted():
            return self._request_otp(request)

    def _request_otp(self, request: Request) -> Response:
        data = validated(OtpRequestInputSerializer, request.data)

        def perform() -> tuple[int, dict]:
            result = services.otp_request(
                workspace=self.workspace,
                dest=data["dest"],
                src=data["src"],
                purpose=data["purpose"],
                message_template=data.get("messageTemplate"),
                locale=data.get("locale"),
                app_hash=data.get("appHash"),
                web_otp_domain=data.get("webOtpDomain"),
                transaction=data.get("transaction"),
                channel=data.get("channel"),
                test=self.is_test,
                actor=self.actor,
            )
            body = OtpRequestDataSerializer(result, context={"now": timezone.now()}).data
            message = MESSAGE_REUSED if result.reused else MESSAGE_SENT
            metrics.OTP_REQUESTS.labels(outcome=RequestOutcome.REUSED if result.reused else RequestOutcome.NEW).inc()
            return 200, envelope(message, body)

        transaction = data.get("transaction")
        payload = {**data, "transaction": transaction.as_dict() if transaction else None}
        return self._idempotent(request, payload=payload, perform=perform)

    @extend_schema(
        operation_id="otp_resend",
        summary="Resend an OTP",
        description="A fresh code in a new SMS for a PENDING session, once `resendAvailableInSeconds` is 0: "
        "the old code stops working at once, the validity starts again, `attemptsLeft` stays as it is. The "
        "cooldown is 30 s after the first send and doubles after each resend (30, 60, 120 s); at most 3 "
        "resends (409 RESEND_LIMIT_REACHED). Too soon: 429 RESEND_TOO_SOON with `Retry-After`. Not pending: 409 "
        "SESSION_NOT_PENDING; expired: 410 EXPIRED. Every send limit and the prepaid balance apply as to a new "
        "SMS (429, 402).",
        request=OtpResendInputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            200: envelope_schema("OtpResendEnvelope", OtpResendDataSerializer()),
            **error_responses(*COMMON_ERRORS, 402, 404, 409, 410, 503, overrides=DESTINATION_BLOCKED),
        },
        examples=[
            example("Request", {}, request=True),
            example(
                "Resent",
                {
                    "success": True,
                    "message": MESSAGE_RESENT,
                    "data": {
                        "sessionId": SESSION_ID,
                        "expiresInSeconds": 300,
                        "attemptsLeft": 4,
                        "reused": False,
                        "resendAvailableInSeconds": 60,
                        "resends": 1,
                    },
                    "requestId": "7d3e2c1b-0a9f-4e8d-b7c6-5a4b3c2d1e0f",
                },
            ),
            example(
                "Too soon",
                {
                    "success": False,
                    "message": "Too soon to resend this OTP. Retry later.",
                    "code": "RESEND_TOO_SOON",
                    "data": None,
                    "requestId": "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f",
                },
                status=429,
            ),
        ],
    )
    def resend(self, request: Request, session_id: uuid.UUID) -> Response:
        data = validated(OtpResendInputSerializer, request.data)

        def perform() -> tuple[int, dict]:
            result = services.otp_resend(
                workspace=self.workspace,
                session_id=session_id,
                channel=data.get("channel"),
                test=self.is_test,
                actor=self.actor,
            )
            metrics.OTP_REQUESTS.labels(outcome=RequestOutcome.RESENT).inc()
            return 200, envelope(MESSAGE_RESENT, OtpResendDataSerializer(result, context={"now": timezone.now()}).data)

        # The operation and its session are the body's identity: the same key on another session is reused.
        with _refusals_counted():
            payload = {"resend": str(session_id), **({"channel": data["channel"]} if data.get("channel") else {})}
            return self._idempotent(request, payload=payload, perform=perform)

    def _idempotent(self, request: Request, *, payload: dict, perform: Callable[[], tuple[int, dict]]) -> Response:
        """Runs `perform`, once per Idempotency-Key when the request has one (replayed for 24 hours)."""
        response = idempotent_response(
            request, workspace=self.workspace, test=self.is_test, payload=payload, perform=perform
        )
        if response.headers.get("Idempotent-Replayed"):
            metrics.OTP_REQUESTS.labels(outcome=RequestOutcome.REPLAYED).inc()
        return response

    @extend_schema(
        operation_id="otp_verify",
        summary="Verify a code",
        description="Checks the code for a session. A failed check answers with the outcome as both "
        "`data.status` and the error `code`: INVALID 400, EXPIRED 410, CANCELED 410, MAX_ATTEMPTS_REACHED 423, "
        "ALREADY_USED 409, NOT_FOUND 404 (also for another workspace's session). `data` holds the outcome "
        "on every one of them.",
        request=OtpVerifyInputSerializer,
        responses={
            200: envelope_schema("OtpVerifyEnvelope", OtpVerifyDataSerializer()),
            **error_responses(
                *COMMON_ERRORS,
                overrides={
                    404: OpenApiResponse(VERIFY_FAILED, description="NOT_FOUND"),
                    400: OpenApiResponse(
                        VERIFY_FAILED, description="INVALID (wrong code), VALIDATION_ERROR or MALFORMED_JSON"
                    ),
                    409: OpenApiResponse(VERIFY_FAILED, description="ALREADY_USED"),
                    410: OpenApiResponse(VERIFY_FAILED, description="EXPIRED or CANCELED"),
                    423: OpenApiResponse(VERIFY_FAILED, description="MAX_ATTEMPTS_REACHED"),
                },
            ),
        },
        examples=[
            example("Request", {"sessionId": SESSION_ID, "code": "123456"}, request=True),
            example(
                "Approved",
                {
                    "success": True,
                    "message": MESSAGE_VERIFIED,
                    "data": {"sessionId": SESSION_ID, "status": "APPROVED", "verified": True, "attemptsLeft": 5},
                    "requestId": "9a1d2c3b-4e5f-4a6b-8c7d-0e1f2a3b4c5d",
                },
            ),
            example(
                "Wrong code",
                {
                    "success": False,
                    "message": "Invalid OTP code.",
                    "code": "INVALID",
                    "data": {"sessionId": SESSION_ID, "status": "INVALID", "verified": False, "attemptsLeft": 4},
                    "requestId": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
                },
                status=400,
            ),
        ],
    )
    @action(detail=False, methods=["post"], url_path="verify")
    def verify(self, request: Request) -> Response:
        data = validated(OtpVerifyInputSerializer, request.data)
        result = services.otp_verify(
            workspace=self.workspace,
            session_id=data["sessionId"],
            code=data["code"],
            transaction=data.get("transaction"),
            test=self.is_test,
        )
        metrics.OTP_VERIFICATIONS.labels(status=result.outcome.value).inc()
        body = OtpVerifyDataSerializer(result).data
        if result.verified:
            return Response(envelope(MESSAGE_VERIFIED, body))
        # A failed verify is an answer, not an exception: its attempt stays committed even if the request
        # runs in a transaction (ATOMIC_REQUESTS), which an exception would roll back.
        http_status, message = VERIFY_OUTCOMES[result.outcome]
        return Response(error_body(message=message, code=result.outcome.value, data=body), status=http_status)

    @extend_schema(
        operation_id="otp_cancel",
        summary="Cancel an OTP session",
        description="Ends a PENDING session for good: its code stops working at once (a verify answers "
        "CANCELED, 410), it is never reused, and its SMS is not sent if it has not gone out yet. Answers the "
        "session as `GET` shows it. 409 SESSION_NOT_PENDING when it is approved, locked, expired or canceled "
        "already; 404 for an unknown or another workspace's session.",
        request=inline_serializer("OtpCancelInput", fields={}),
        responses={
            200: envelope_schema("OtpCancelEnvelope", OtpSessionDataSerializer()),
            **error_responses(*COMMON_ERRORS, 404, 409),
        },
        examples=[example("Request", {}, request=True)],
    )
    def cancel(self, request: Request, session_id: uuid.UUID) -> Response:
        services.otp_cancel(workspace=self.workspace, session_id=session_id, test=self.is_test)
        session = selectors.otp_session_get(workspace=self.workspace, session_id=session_id, test=self.is_test)
        data = OtpSessionDataSerializer(session, context={"now": timezone.now()}).data
        return Response(envelope(MESSAGE_CANCELED, data))

    @extend_schema(
        operation_id="otp_session_retrieve",
        summary="Read an OTP session",
        description="The session as this workspace sees it, with its SMS delivery. Another workspace's "
        "session answers 404 exactly like a missing one.",
        responses={
            200: envelope_schema("OtpSessionEnvelope", OtpSessionDataSerializer()),
            **error_responses(401, 403, 404, 405, 429, 500),
        },
    )
    def retrieve(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.otp_session_get(workspace=self.workspace, session_id=session_id, test=self.is_test)
        data = OtpSessionDataSerializer(session, context={"now": timezone.now()}).data
        return Response(envelope("OTP session retrieved", data))


def idempotent_response(
    request: Request,
    *,
    workspace: Workspace,
    test: bool,
    payload: dict,
    perform: Callable[[], tuple[int, dict]],
) -> Response:
    """Runs `perform` (it answers a status and an envelope), once per Idempotency-Key when the request has
    one: the same key and `payload` within 24 hours replays the first answer with `Idempotent-Replayed:
    true`. Every door that sends (requests, resends, the relay) takes the header this way."""
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is None:
        status_code, body = perform()
        return Response(body, status=status_code)
    problem = idempotency.key_problem(idempotency_key)
    if problem:
        raise ValidationFailed.for_field("Idempotency-Key", problem)
    answer = idempotency.run_idempotent(
        workspace=workspace, key=idempotency_key, payload=payload, perform=perform, test=test
    )
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    return Response(answer.body, status=answer.status, headers=headers)


@contextmanager
def _refusals_counted() -> Iterator[None]:
    """An OTP request or resend that fails is counted under the error code its answer carries."""
    try:
        yield
    except Exception as exc:
        answer = error_answer(exc)
        metrics.OTP_REQUESTS.labels(outcome=answer.code if answer else UNEXPECTED_REFUSAL).inc()
        raise


@extend_schema(tags=["test-inbox"])
class TestInboxViewSet(WorkspaceViewSet):
    """`GET /v1/messaging/test-inbox?dest=...` (API.md section 10): the SMS test keys "sent" to one number.

    Test keys only: a live key gets the 404 of an unknown route.
    """

    __test__ = False  # not a test class, whatever pytest makes of its name
    permission_classes = [HasWorkspace, HoldsTestKey]

    @extend_schema(
        operation_id="test_inbox_list",
        summary="Read the test inbox (test keys only)",
        description="The SMS that test-mode requests and resends made for `dest` in the last 24 hours, newest "
        "first, code included: the one place the service shows a code, so that your own end-to-end tests can "
        "read it and verify it. Test keys (`zk_test_`) only: a live key gets 404 NOT_FOUND, as for an unknown "
        "route. A `dest` missing or not in E.164 form is 400 VALIDATION_ERROR with `errors.dest`.",
        parameters=[InboxQuerySerializer],
        responses={
            200: envelope_schema("TestInboxEnvelope", InboxMessageSerializer(many=True)),
            **error_responses(400, 401, 403, 404, 405, 429, 500),
        },
        examples=[
            example(
                "Test inbox",
                {
                    "success": True,
                    "message": "Test inbox retrieved",
                    "data": [
                        {
                            "sessionId": SESSION_ID,
                            "dest": "+233202007745",
                            "src": "ZECKTA",
                            "text": "Your login code is 219131. It expires in 5 minutes. Never share it with anyone.",
                            "createdAt": "2026-06-09T18:00:00Z",
                        }
                    ],
                    "requestId": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7",
                },
            ),
            example(
                "Live key",
                {
                    "success": False,
                    "message": "The requested resource was not found.",
                    "code": "NOT_FOUND",
                    "data": None,
                    "requestId": "8f9e0d1c-2b3a-4c5d-8e7f-6a5b4c3d2e1f",
                },
                status=404,
            ),
        ],
    )
    def inbox(self, request: Request) -> Response:
        query = validated(InboxQuerySerializer, request.query_params)
        messages = selectors.inbox_list(workspace=self.workspace, dest=query["dest"], now=timezone.now())
        return Response(envelope("Test inbox retrieved", InboxMessageSerializer(messages, many=True).data))


RECEIPT_ACCEPTED = envelope_schema("SmsReceiptEnvelope", serializers.JSONField(allow_null=True))


class SmsReceiptView(APIView):
    """`POST /v1/webhooks/sms/{routeId}`: a provider's delivery receipts (API.md section 11); `GET`: the
    verification handshake of a provider that makes one (WhatsApp, section 15), else 405.

    No Bearer key: each provider's own authentication is checked by its backend (a signature or the
    route's receipt token). Neither counted nor limited as a failed authentication. A receipt takes effect
    before the 200; one for an unknown message id is answered 200 too (and kept, see otp.receipts).
    """

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes: list[type] = []
    http_method_names = ["get", "post"]

    @extend_schema(
        operation_id="sms_receipt_handshake",
        summary="A provider's webhook verification",
        description="Called by providers, not by clients: WhatsApp's verification handshake (`hub.mode`, "
        "`hub.verify_token`, `hub.challenge`), answered with the challenge as text/plain when the token is the "
        "route's `verify_token` (API.md section 15). Routes of other backends answer 405.",
        parameters=[
            OpenApiParameter("hub.mode", str, required=False),
            OpenApiParameter("hub.verify_token", str, required=False),
            OpenApiParameter("hub.challenge", str, required=False),
        ],
        auth=[],
        responses={
            (200, "text/plain"): OpenApiResponse(response=str, description="The hub.challenge, as sent."),
            **error_responses(403, 404, 405, 500),
        },
        tags=["receipts"],
    )
    def get(self, request: Request, route_id: str) -> HttpResponse:
        choice = route_choice(route_id)
        try:
            answer = choice.gateway().answer_handshake(_receipt_request(request))
        except (ReceiptRejected, GatewayError) as exc:
            logger.warning("webhook verification refused on route %s: %s", choice.name, exc)
            raise ReceiptForbidden("This webhook verification failed the route's check.") from None
        if answer is None:
            raise MethodNotAllowed(request.method or "GET")
        return HttpResponse(answer, content_type="text/plain; charset=utf-8")

    @extend_schema(
        operation_id="sms_receipt",
        summary="A provider's delivery receipt",
        description="Called by SMS providers, not by clients: authenticated the provider's way. Body and "
        "encoding are the provider's own (form-encoded or JSON).",
        request=None,
        auth=[],
        responses={200: RECEIPT_ACCEPTED, **error_responses(400, 403, 404, 405, 413, 500)},
        tags=["receipts"],  # the providers' callbacks, apart from the clients' own webhooks
    )
    def post(self, request: Request, route_id: str) -> Response:
        choice = route_choice(route_id)
        try:
            receipts = choice.gateway().parse_receipts(_receipt_request(request))
        except (ReceiptRejected, GatewayError) as exc:
            logger.warning("receipt refused on route %s: %s", choice.name, exc)
            raise ReceiptForbidden() from None
        except ReceiptInvalid as exc:
            raise ValidationFailed(str(exc), errors={exc.field: [str(exc)]}) from None
        if len(receipts) > RECEIPTS_PER_REQUEST_MAX:
            logger.warning(
                "receipt request on route %s refused: %s receipts, at most %s",
                choice.name,
                len(receipts),
                RECEIPTS_PER_REQUEST_MAX,
            )
            raise ReceiptTooLarge(f"At most {RECEIPTS_PER_REQUEST_MAX} receipts per request.")
        receipts_apply(route_key=choice.key, receipts=receipts)
        return Response(envelope("Receipt accepted"))


def _receipt_request(request: Request) -> ReceiptRequest:
    raw = request._request
    body = raw.body
    content_type = raw.content_type or ""
    pairs = (
        parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        if content_type == "application/x-www-form-urlencoded"
        else []
    )
    form_lists: dict[str, list[str]] = {}
    for name, value in pairs:
        form_lists.setdefault(name, []).append(value)
    # The URL the provider signed: the public one when the service sits behind a proxy that rewrites it.
    url = f"{settings.PUBLIC_URL}{raw.get_full_path()}" if settings.PUBLIC_URL else raw.build_absolute_uri()
    return ReceiptRequest(
        url=url,
        headers=dict(raw.headers),
        query=raw.GET.dict(),
        form=dict(pairs),
        body=body,
        content_type=content_type,
        form_lists=form_lists,
    )
