import uuid

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from senders import selectors, services
from senders.serializers import (
    SenderNameInputSerializer,
    SenderNameOutputSerializer,
    SenderNamePageOutputSerializer,
)
from workspaces.authentication import HasWorkspace, LiveKeyForChanges
from workspaces.viewsets import WorkspaceViewSet
from zeckta.api.pages import PageQuerySerializer, page_data
from zeckta.api.responses import envelope
from zeckta.api.schema import COMMON_ERRORS, LIVE_KEY_REQUIRED, error_responses
from zeckta.api.schema import envelope as envelope_schema
from zeckta.api.utils import validated

SENDER_NAME = envelope_schema("SenderNameEnvelope", SenderNameOutputSerializer())
SENDER_NAME_PAGE = envelope_schema("SenderNamePageEnvelope", SenderNamePageOutputSerializer())
DELETED = envelope_schema("SenderNameDeletedEnvelope", serializers.JSONField(allow_null=True))


@extend_schema(tags=["sender-names"])
class SenderNameViewSet(WorkspaceViewSet):
    """Sender name requests of the caller's workspace. Only staff approve or reject them, never this API.
    Live configuration: a test key lists and reads them, and changes none (API.md section 10)."""

    permission_classes = [HasWorkspace, LiveKeyForChanges]

    @extend_schema(
        operation_id="sender_names_list",
        parameters=[PageQuerySerializer],
        responses={200: SENDER_NAME_PAGE, **error_responses(400, 401, 403, 429, 500)},
    )
    def list_page(self, request: Request) -> Response:
        query = validated(PageQuerySerializer, request.query_params)
        page, page_size = query["page"], query["pageSize"]
        result = selectors.sender_name_page(workspace=self.workspace, page=page, page_size=page_size)
        return Response(
            envelope(
                "Sender names retrieved",
                page_data(SenderNamePageOutputSerializer, result, page=page, page_size=page_size),
            )
        )

    @extend_schema(
        operation_id="sender_names_create",
        request=SenderNameInputSerializer,
        responses={201: SENDER_NAME, **error_responses(*COMMON_ERRORS, 409, overrides=LIVE_KEY_REQUIRED)},
    )
    def create(self, request: Request) -> Response:
        data = validated(SenderNameInputSerializer, request.data)
        sender_name = services.sender_name_create(
            workspace=self.workspace,
            name=data["sender"],
            sender_type=data["senderType"],
            purpose=data["purpose"],
            country_code=data.get("countryCode", ""),
            actor=self.actor,
        )
        body = envelope("Sender name submitted for approval", SenderNameOutputSerializer(sender_name).data)
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="sender_names_retrieve",
        responses={200: SENDER_NAME, **error_responses(401, 403, 404, 405, 429, 500)},
    )
    def retrieve(self, request: Request, sender_name_id: uuid.UUID) -> Response:
        sender_name = selectors.sender_name_get(workspace=self.workspace, sender_name_id=sender_name_id)
        return Response(envelope("Sender name retrieved", SenderNameOutputSerializer(sender_name).data))

    @extend_schema(
        operation_id="sender_names_update",
        request=SenderNameInputSerializer,
        responses={200: SENDER_NAME, **error_responses(*COMMON_ERRORS, 404, 409, overrides=LIVE_KEY_REQUIRED)},
    )
    def update(self, request: Request, sender_name_id: uuid.UUID) -> Response:
        data = validated(SenderNameInputSerializer, request.data)
        sender_name = services.sender_name_update(
            workspace=self.workspace,
            sender_name_id=sender_name_id,
            name=data["sender"],
            sender_type=data["senderType"],
            purpose=data["purpose"],
            country_code=data.get("countryCode", ""),
            actor=self.actor,
        )
        data = SenderNameOutputSerializer(sender_name).data
        return Response(envelope("Sender name updated and resubmitted for approval", data))

    @extend_schema(
        operation_id="sender_names_delete",
        responses={200: DELETED, **error_responses(401, 403, 404, 405, 409, 429, 500, overrides=LIVE_KEY_REQUIRED)},
    )
    def destroy(self, request: Request, sender_name_id: uuid.UUID) -> Response:
        services.sender_name_delete(workspace=self.workspace, sender_name_id=sender_name_id, actor=self.actor)
        return Response(envelope("Sender name deleted"))
