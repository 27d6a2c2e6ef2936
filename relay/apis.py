"""`POST /v1/messaging/sms` and `GET /v1/messaging/sms/{messageId}` (API.md section 14): validate, call
otp.relay, serialize. Sending, limits, units, receipts and the test inbox are otp's, unchanged."""

import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from otp.apis import IDEMPOTENCY_KEY, idempotent_response
from otp.relay import relay_check_enabled, relayed_sms_get, sms_relay
from relay.serializers import RelayedSmsSerializer, RelayInputSerializer, RelayQueuedSerializer
from workspaces.viewsets import WorkspaceViewSet
from zeckta.api.responses import envelope
from zeckta.api.schema import COMMON_ERRORS, error_responses, example
from zeckta.api.schema import envelope as envelope_schema
from zeckta.api.utils import validated

MESSAGE_QUEUED = "SMS queued"
MESSAGE_ID = "01939f5e-7a4c-7d2e-9b1a-4c3d2e1f0a9b"


@extend_schema(tags=["relay"])
class RelayViewSet(WorkspaceViewSet):
    # Sending costs money: never without the limiter (as an OTP request).
    rate_limit_fail_closed = frozenset({"send"})

    @extend_schema(
        operation_id="sms_relay",
        summary="Relay an SMS you wrote",
        description="Queues `text` (1 to 612 characters, code included) to `dest` from the sender name `src`, "
        "through the same routes, failover, receipts, send limits and units as an OTP SMS. For identity servers "
        "that make and check their own codes. Off until the operator enables it for the workspace (403 "
        "RELAY_DISABLED). A test key's SMS goes to the test inbox. An optional `Idempotency-Key` header makes "
        "retries safe for 24 hours.",
        request=RelayInputSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            202: envelope_schema("RelayQueuedEnvelope", RelayQueuedSerializer()),
            **error_responses(*COMMON_ERRORS, 402, 409, 503),
        },
        examples=[
            example(
                "Request",
                {"dest": "+233202007745", "src": "ZECKTA", "text": "Your Acme code is 482913", "purpose": "LOGIN"},
                request=True,
            ),
            example(
                "Queued",
                {
                    "success": True,
                    "message": MESSAGE_QUEUED,
                    "data": {"messageId": MESSAGE_ID, "segments": 1, "units": 1, "status": "queued"},
                    "requestId": "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01",
                },
                status=202,
            ),
        ],
    )
    def send(self, request: Request) -> Response:
        # Before the body: a workspace without the relay learns nothing from its fields.
        relay_check_enabled(workspace=self.workspace)
        data = validated(RelayInputSerializer, request.data)

        def perform() -> tuple[int, dict]:
            message = sms_relay(
                workspace=self.workspace,
                dest=data["dest"],
                src=data["src"],
                text=data["text"],
                purpose=data.get("purpose"),
                test=self.is_test,
            )
            return status.HTTP_202_ACCEPTED, envelope(MESSAGE_QUEUED, RelayQueuedSerializer(message).data)

        # The operation is part of the body's identity: the same key on an OTP request is another body.
        payload = {"operation": "sms_relay", **data}
        return idempotent_response(
            request, workspace=self.workspace, test=self.is_test, payload=payload, perform=perform
        )

    @extend_schema(
        operation_id="sms_relay_retrieve",
        summary="Read a relayed SMS",
        description="Its delivery as an OTP session's `delivery` shows it (API.md section 4), with `messageId`, "
        "`dest` and `src`. Another workspace's SMS, or an OTP SMS's id, answers 404.",
        responses={
            200: envelope_schema("RelayedSmsEnvelope", RelayedSmsSerializer()),
            **error_responses(401, 403, 404, 405, 429, 500),
        },
    )
    def retrieve(self, request: Request, message_id: uuid.UUID) -> Response:
        relay_check_enabled(workspace=self.workspace)
        message = relayed_sms_get(workspace=self.workspace, message_id=message_id, test=self.is_test)
        return Response(envelope("SMS retrieved", RelayedSmsSerializer(message).data))
