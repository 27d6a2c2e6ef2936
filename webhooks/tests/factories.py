"""Endpoints and events made through the real services."""

from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from webhooks.models import Event, WebhookDelivery
from webhooks.services import EndpointWithSecret, webhook_endpoint_create, webhook_event_record
from workspaces.models import Workspace

SESSION_VIEW = {
    "sessionId": "feab6011-2469-4804-ace5-ee9dcb5b9ef2",
    "dest": "+233202007745",
    "src": "ZECKTA",
    "purpose": "LOGIN",
    "status": "APPROVED",
    "expiresInSeconds": 241,
    "attemptsLeft": 4,
    "createdAt": "2026-12-02T10:00:00Z",
    "verifiedAt": "2026-12-02T10:00:59Z",
    "delivery": None,
}


def endpoint_for(
    workspace: Workspace, url: str, events: Iterable[str] = Event.values, *, test: bool = False
) -> EndpointWithSecret:
    return webhook_endpoint_create(workspace=workspace, url=url, events=list(events), test=test)


def record_event(
    workspace: Workspace, event_type: str = Event.OTP_APPROVED, *, at: datetime | None = None, data: dict | None = None
) -> list[WebhookDelivery]:
    """Records an event as the otp app does, in a transaction; returns the deliveries it wrote."""
    before = WebhookDelivery.objects.aggregate(last=Max("pk"))["last"] or 0
    with transaction.atomic():
        webhook_event_record(
            workspace_id=workspace.pk,
            event_type=event_type,
            at=at or timezone.now(),
            data=data if data is not None else SESSION_VIEW,
        )
    return list(WebhookDelivery.objects.filter(pk__gt=before).order_by("pk"))
