"""`POST /v1/messaging/sms`, `GET /v1/messaging/sms/{messageId}` and the Supabase hooks under
`/v1/messaging/hooks/supabase` (API.md section 14): validate, call otp.relay or relay.hooks, serialize.
Sending, limits, units, receipts and the test inbox are otp's, unchanged."""

import uuid

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from otp.apis import IDEMPOTENCY_KEY, idempotent_response
from otp.relay import relay_check_enabled, relayed_sms_get, sms_relay
from relay import hooks as hooks_service
from relay.serializers import (
    RelayedSmsSerializer,
    RelayInputSerializer,
    RelayQueuedSerializer,
    SupabaseHookSerializer,
    SupabaseHookWithSecretSerializer,
)
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


HOOK_ID = "9b2e6c41-7d3a-4f0e-8a15-2c6d9e4f1b37"
HOOK_EXAMPLE = {
    "hookId": HOOK_ID,
    "url": f"https://otp.example.com/hooks/supabase/{HOOK_ID}",
    "createdAt": "2026-12-02T10:00:00Z",
}
HOOK_SECRET_EXAMPLE = "v1,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw7Nk8aYHcpk8="  # noqa: S105 (an example)
MESSAGE_HOOK_CREATED = "Supabase hook created. Store its secret now: it is not shown again."


@extend_schema(tags=["hooks"])
class SupabaseHookViewSet(WorkspaceViewSet):
    """The workspace's Supabase Auth Send SMS hooks (API.md section 14), managed as webhook endpoints are:
    the secret is answered once; a test key's hooks are test hooks, seen by test keys only."""

    def _context(self) -> dict[str, str]:
        return {"base_url": self.request.build_absolute_uri("/").rstrip("/")}

    @extend_schema(
        operation_id="supabase_hooks_list",
        summary="List Supabase hooks",
        description="The workspace's hooks, oldest first. Their secrets are never shown again.",
        responses={
            200: envelope_schema("SupabaseHookListEnvelope", SupabaseHookSerializer(many=True)),
            **error_responses(401, 403, 429, 500),
        },
    )
    # `list_hooks`, not `list`: the answer is one envelope holding the hooks, not a JSON array.
    def list_hooks(self, request: Request) -> Response:
        hooks = hooks_service.supabase_hook_list(workspace=self.workspace, test=self.is_test)
        data = SupabaseHookSerializer(hooks, many=True, context=self._context()).data
        return Response(envelope("Supabase hooks retrieved", data))

    @extend_schema(
        operation_id="supabase_hooks_create",
        summary="Add a Supabase Send SMS hook",
        description="Answers the hook's `url` and `secret` (`v1,whsec_<base64>`, shown this once): paste both "
        "into Supabase (Authentication, Hooks, Send SMS hook, HTTPS). Supabase then posts each phone code to the "
        "URL, and the service sends it in the workspace's default LOGIN text from its default sender name. At "
        "most 10 hooks a workspace per mode.",
        request=inline_serializer("SupabaseHookInput", fields={}),
        responses={
            201: envelope_schema("SupabaseHookWithSecretEnvelope", SupabaseHookWithSecretSerializer()),
            **error_responses(*COMMON_ERRORS),
        },
        examples=[
            example("Request", {}, request=True),
            example(
                "Created",
                {
                    "success": True,
                    "message": MESSAGE_HOOK_CREATED,
                    "data": {**HOOK_EXAMPLE, "secret": HOOK_SECRET_EXAMPLE},
                    "requestId": "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01",
                },
                status=201,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        created = hooks_service.supabase_hook_create(workspace=self.workspace, test=self.is_test)
        data = SupabaseHookWithSecretSerializer(created, context=self._context()).data
        return Response(envelope(MESSAGE_HOOK_CREATED, data), status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="supabase_hooks_retrieve",
        summary="Read a Supabase hook",
        description="Another workspace's hook, or one of the other mode, answers 404 like a missing one.",
        responses={
            200: envelope_schema("SupabaseHookEnvelope", SupabaseHookSerializer()),
            **error_responses(401, 403, 404, 405, 429, 500),
        },
    )
    def retrieve(self, request: Request, hook_id: uuid.UUID) -> Response:
        hook = hooks_service.supabase_hook_get(workspace=self.workspace, hook_id=hook_id, test=self.is_test)
        return Response(envelope("Supabase hook retrieved", SupabaseHookSerializer(hook, context=self._context()).data))

    @extend_schema(
        operation_id="supabase_hooks_delete",
        summary="Delete a Supabase hook",
        description="Supabase's next call to its URL is answered 404 and sends nothing.",
        responses={
            200: envelope_schema("SupabaseHookDeletedEnvelope", serializers.JSONField(allow_null=True)),
            **error_responses(401, 403, 404, 405, 429, 500),
        },
    )
    def destroy(self, request: Request, hook_id: uuid.UUID) -> Response:
        hooks_service.supabase_hook_delete(workspace=self.workspace, hook_id=hook_id, test=self.is_test)
        return Response(envelope("Supabase hook deleted"))
