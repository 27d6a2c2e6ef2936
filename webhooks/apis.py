import uuid

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from webhooks import selectors, services
from webhooks.serializers import (
    WebhookEndpointInputSerializer,
    WebhookEndpointOutputSerializer,
    WebhookEndpointPageOutputSerializer,
    WebhookEndpointWithSecretSerializer,
)
from workspaces.viewsets import WorkspaceViewSet
from zeckta.api.pages import PageQuerySerializer, page_data
from zeckta.api.responses import envelope
from zeckta.api.schema import COMMON_ERRORS, error_responses, example
from zeckta.api.schema import envelope as envelope_schema
from zeckta.api.utils import validated

ENDPOINT = envelope_schema("WebhookEndpointEnvelope", WebhookEndpointOutputSerializer())
ENDPOINT_WITH_SECRET = envelope_schema("WebhookEndpointWithSecretEnvelope", WebhookEndpointWithSecretSerializer())
ENDPOINT_PAGE = envelope_schema("WebhookEndpointPageEnvelope", WebhookEndpointPageOutputSerializer())
DELETED = envelope_schema("WebhookEndpointDeletedEnvelope", serializers.JSONField(allow_null=True))

MESSAGE_CREATED = "Webhook endpoint created. Store its secret now: it is not shown again."
MESSAGE_ROTATED = (
    "Webhook secret rotated. Store the new secret now: it is not shown again. The previous one "
    "keeps signing beside it for 24 hours."
)

WEBHOOK_ID = "5d0c3f8e-2b7a-4e61-8f0d-9a4c1e2b3d55"
ENDPOINT_EXAMPLE = {
    "webhookId": WEBHOOK_ID,
    "url": "https://example.com/webhooks/zeckta",
    "events": ["otp.approved", "otp.delivery_failed"],
    "createdAt": "2026-12-02T10:00:00Z",
    "failing": False,
}
SECRET_EXAMPLE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw7Nk8aYHcpk8="  # noqa: S105 (the documentation's example)
REQUEST_ID = "0b7c1f9e-0d5a-4c1e-9a57-3c1a2b9d8e01"


@extend_schema(tags=["webhooks"])
class WebhookEndpointViewSet(WorkspaceViewSet):
    """The workspace's webhook endpoints (API.md section 9). A secret is answered once, when it is made.
    A test key's endpoints are test endpoints, and each kind of key sees its own kind only (section 10)."""

    @extend_schema(
        operation_id="webhooks_list",
        summary="List webhook endpoints",
        description="The workspace's endpoints, oldest first. Their secrets are never shown again.",
        parameters=[PageQuerySerializer],
        responses={200: ENDPOINT_PAGE, **error_responses(400, 401, 403, 429, 500)},
        examples=[
            example(
                "Endpoints",
                {
                    "success": True,
                    "message": "Webhook endpoints retrieved",
                    "data": {"items": [ENDPOINT_EXAMPLE], "page": 1, "pageSize": 20, "total": 1, "totalPages": 1},
                    "requestId": REQUEST_ID,
                },
            )
        ],
    )
    def list_page(self, request: Request) -> Response:
        query = validated(PageQuerySerializer, request.query_params)
        page, page_size = query["page"], query["pageSize"]
        result = selectors.webhook_endpoint_page(
            workspace_id=self.workspace.pk, test=self.is_test, page=page, page_size=page_size
        )
        data = page_data(WebhookEndpointPageOutputSerializer, result, page=page, page_size=page_size)
        return Response(envelope("Webhook endpoints retrieved", data))

    @extend_schema(
        operation_id="webhooks_create",
        summary="Add a webhook endpoint",
        description="Events go to `url` (https; plain http only for hosts the operator allows) signed per "
        "Standard Webhooks with the `secret` of the answer: shown this once. At most 10 endpoints a workspace "
        "per mode: one made with a test key is a test endpoint, which receives the events of test sessions only "
        "and is seen by test keys only (a live one: live sessions, live keys). "
        "400 VALIDATION_ERROR names the field (`errors.url`, `errors.events`).",
        request=WebhookEndpointInputSerializer,
        responses={201: ENDPOINT_WITH_SECRET, **error_responses(*COMMON_ERRORS)},
        examples=[
            example(
                "Request",
                {"url": "https://example.com/webhooks/zeckta", "events": ["otp.approved", "otp.delivery_failed"]},
                request=True,
            ),
            example(
                "Created",
                {
                    "success": True,
                    "message": MESSAGE_CREATED,
                    "data": {**ENDPOINT_EXAMPLE, "secret": SECRET_EXAMPLE},
                    "requestId": REQUEST_ID,
                },
                status=201,
            ),
            example(
                "Not https",
                {
                    "success": False,
                    "message": "The request has invalid fields.",
                    "code": "VALIDATION_ERROR",
                    "data": None,
                    "errors": {"url": ["The URL must use https."]},
                    "requestId": REQUEST_ID,
                },
                status=400,
            ),
        ],
    )
    def create(self, request: Request) -> Response:
        data = validated(WebhookEndpointInputSerializer, request.data)
        created = services.webhook_endpoint_create(
            workspace=self.workspace, url=data["url"], events=data["events"], test=self.is_test, actor=self.actor
        )
        body = envelope(MESSAGE_CREATED, WebhookEndpointWithSecretSerializer(created).data)
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="webhooks_retrieve",
        summary="Read a webhook endpoint",
        description="Another workspace's endpoint, or one of the other mode (test or live), answers 404 like a "
        "missing one.",
        responses={200: ENDPOINT, **error_responses(401, 403, 404, 405, 429, 500)},
        examples=[
            example(
                "Endpoint",
                {
                    "success": True,
                    "message": "Webhook endpoint retrieved",
                    "data": ENDPOINT_EXAMPLE,
                    "requestId": REQUEST_ID,
                },
            )
        ],
    )
    def retrieve(self, request: Request, webhook_id: uuid.UUID) -> Response:
        endpoint = selectors.webhook_endpoint_get(
            workspace_id=self.workspace.pk, webhook_id=webhook_id, test=self.is_test
        )
        return Response(envelope("Webhook endpoint retrieved", WebhookEndpointOutputSerializer(endpoint).data))

    @extend_schema(
        operation_id="webhooks_delete",
        summary="Delete a webhook endpoint",
        description="Nothing more is sent to it, retries under way included.",
        responses={200: DELETED, **error_responses(401, 403, 404, 405, 429, 500)},
        examples=[
            example(
                "Deleted",
                {"success": True, "message": "Webhook endpoint deleted", "data": None, "requestId": REQUEST_ID},
            )
        ],
    )
    def destroy(self, request: Request, webhook_id: uuid.UUID) -> Response:
        services.webhook_endpoint_delete(
            workspace=self.workspace, webhook_id=webhook_id, test=self.is_test, actor=self.actor
        )
        return Response(envelope("Webhook endpoint deleted"))

    @extend_schema(
        operation_id="webhooks_rotate_secret",
        summary="Rotate a webhook endpoint's secret",
        description="Answers a new secret, shown this once. For 24 hours messages carry two signatures, one "
        "per secret, so a receiver may switch to the new secret at any time within them.",
        request=inline_serializer("WebhookRotateSecretInput", fields={}),
        responses={200: ENDPOINT_WITH_SECRET, **error_responses(*COMMON_ERRORS, 404)},
        examples=[
            example("Request", {}, request=True),
            example(
                "Rotated",
                {
                    "success": True,
                    "message": MESSAGE_ROTATED,
                    "data": {**ENDPOINT_EXAMPLE, "secret": SECRET_EXAMPLE},
                    "requestId": REQUEST_ID,
                },
            ),
        ],
    )
    def rotate_secret(self, request: Request, webhook_id: uuid.UUID) -> Response:
        rotated = services.webhook_endpoint_rotate_secret(
            workspace=self.workspace, webhook_id=webhook_id, test=self.is_test, actor=self.actor
        )
        return Response(envelope(MESSAGE_ROTATED, WebhookEndpointWithSecretSerializer(rotated).data))
