import uuid

from django.utils import timezone
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from otp import idempotency, selectors, services
from otp.serializers import (
    OtpRequestInputSerializer,
    OtpVerifyInputSerializer,
    request_data,
    session_data,
    verify_data,
)
from otp.services import VerifyStatus
from zeckta.api.errors import ApplicationError, ValidationFailed
from zeckta.api.responses import envelope
from zeckta.api.viewsets import ApiViewSet

MESSAGE_SENT = "OTP sent successfully"
MESSAGE_REUSED = "Active OTP already exists. No new SMS sent."

# Verify outcome -> (HTTP status, message). A failed verify's error `code` equals its status.
VERIFY_OUTCOMES = {
    VerifyStatus.APPROVED: (status.HTTP_200_OK, "OTP verified successfully"),
    VerifyStatus.INVALID: (status.HTTP_400_BAD_REQUEST, "Invalid OTP code."),
    VerifyStatus.EXPIRED: (status.HTTP_410_GONE, "OTP has expired."),
    VerifyStatus.MAX_ATTEMPTS_REACHED: (status.HTTP_423_LOCKED, "Maximum verification attempts reached."),
    VerifyStatus.ALREADY_USED: (status.HTTP_409_CONFLICT, "OTP has already been used."),
}


class OtpVerifyFailed(ApplicationError):
    def __init__(self, outcome: str, data: dict) -> None:
        self.status_code, message = VERIFY_OUTCOMES[outcome]
        self.code = outcome
        super().__init__(message, data=data)


def _validated(serializer_class, request: Request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class OtpViewSet(ApiViewSet):
    """POST request, POST verify, GET one session: validate, call one service or selector, serialize."""

    # Sending costs money: never without the limiter. Verify is guarded by the attempt counter in the DB.
    rate_limit_fail_closed = frozenset({"request_otp"})

    @action(detail=False, methods=["post"], url_path="request")
    def request_otp(self, request: Request) -> Response:
        data = _validated(OtpRequestInputSerializer, request)
        idempotency_key = request.headers.get("Idempotency-Key")

        def perform() -> tuple[int, dict]:
            result = services.otp_request(
                workspace=self.workspace,
                dest=data["dest"],
                src=data["src"],
                purpose=data["purpose"],
                message_template=data.get("messageTemplate"),
            )
            message = MESSAGE_REUSED if result.reused else MESSAGE_SENT
            return 200, envelope(message, request_data(result.session, reused=result.reused, now=timezone.now()))

        if idempotency_key is None:
            return Response(perform()[1])
        problem = idempotency.key_problem(idempotency_key)
        if problem:
            raise ValidationFailed.for_field("Idempotency-Key", problem)
        answer = idempotency.run_idempotent(
            workspace=self.workspace, key=idempotency_key, payload=dict(data), perform=perform
        )
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
        return Response(answer.body, status=answer.status, headers=headers)

    @action(detail=False, methods=["post"], url_path="verify")
    def verify(self, request: Request) -> Response:
        data = _validated(OtpVerifyInputSerializer, request)
        result = services.otp_verify(workspace=self.workspace, session_id=data["sessionId"], code=data["code"])
        body = verify_data(result.session, status=result.status, verified=result.verified)
        if not result.verified:
            raise OtpVerifyFailed(result.status, body)
        return Response(envelope(VERIFY_OUTCOMES[VerifyStatus.APPROVED][1], body))

    def retrieve(self, request: Request, session_id: uuid.UUID) -> Response:
        session = selectors.otp_session_get(workspace=self.workspace, session_id=session_id)
        return Response(envelope("OTP session retrieved", session_data(session, now=timezone.now())))

