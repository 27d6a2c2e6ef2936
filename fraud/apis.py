import uuid

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from fraud import selectors, services
from fraud.serializers import FraudBlockSerializer
from workspaces.authentication import HasWorkspace, LiveKeyForChanges
from workspaces.viewsets import WorkspaceViewSet
from zeckta.api.pages import PageOutputSerializer, PageQuerySerializer, page_data
from zeckta.api.responses import envelope
from zeckta.api.schema import LIVE_KEY_REQUIRED, error_responses
from zeckta.api.schema import envelope as envelope_schema
from zeckta.api.utils import validated


class FraudBlockPageOutputSerializer(PageOutputSerializer):
    items = FraudBlockSerializer(many=True)


FRAUD_BLOCK = envelope_schema("FraudBlockEnvelope", FraudBlockSerializer())
FRAUD_BLOCK_PAGE = envelope_schema("FraudBlockPageEnvelope", FraudBlockPageOutputSerializer())


@extend_schema(tags=["fraud"])
class FraudBlockViewSet(WorkspaceViewSet):
    """The fraud guard's blocks and shadow decisions for the caller's workspace (API.md section 13). Any key
    lists them; only a live key lifts one, since a lift changes what live traffic may do (section 10)."""

    permission_classes = [HasWorkspace, LiveKeyForChanges]

    @extend_schema(
        operation_id="fraud_blocks_list",
        description="The workspace's blocks (`mode` enforce) and shadow decisions (`mode` shadow) of the last 30 "
        "days, newest first. `evidence` is what tripped the rule, counted when it tripped. A block is in force "
        "while `liftedAt` is null and `endsAt` is in the future.",
        parameters=[PageQuerySerializer],
        responses={200: FRAUD_BLOCK_PAGE, **error_responses(400, 401, 403, 429, 500)},
    )
    def list_page(self, request: Request) -> Response:
        query = validated(PageQuerySerializer, request.query_params)
        page, page_size = query["page"], query["pageSize"]
        result = selectors.fraud_block_page(
            workspace=self.workspace, now=timezone.now(), page=page, page_size=page_size
        )
        return Response(
            envelope(
                "Fraud blocks retrieved",
                page_data(FraudBlockPageOutputSerializer, result, page=page, page_size=page_size),
            )
        )

    @extend_schema(
        operation_id="fraud_blocks_lift",
        description="Lifts the block at once: its range or country is sent to again, and the rule counts it "
        "afresh from now. Lifting a block that is already lifted or has ended changes nothing and answers 200 "
        "with the block as it is. Audited. A test key gets 403 LIVE_KEY_REQUIRED.",
        responses={200: FRAUD_BLOCK, **error_responses(401, 403, 404, 405, 429, 500, overrides=LIVE_KEY_REQUIRED)},
    )
    def destroy(self, request: Request, block_id: uuid.UUID) -> Response:
        block = services.fraud_block_lift(workspace=self.workspace, block_id=block_id, actor=self.actor)
        message = "Fraud block lifted" if block.lifted_at else "Fraud block already ended: nothing to lift"
        return Response(envelope(message, FraudBlockSerializer(block).data))
