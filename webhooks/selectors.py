"""Reads for webhook endpoints, always scoped by workspace, and the subscription check of the hot path."""

import uuid
from collections.abc import Collection

from django.db.models import QuerySet

from webhooks.errors import WebhookEndpointNotFound
from webhooks.models import WebhookEndpoint
from zeckta.db import Page, page_of
from zeckta.localcache import LocalCache

# Per workspace: (endpoint pk, the events it receives) for each of its endpoints.
Subscriptions = tuple[tuple[int, frozenset[str]], ...]

_subscriptions: LocalCache[Subscriptions] = LocalCache("webhook subscriptions")


def webhook_subscriptions(*, workspace_id: int) -> Subscriptions:
    """Read at most once per LOCAL_CACHE_SECONDS per process: an endpoint created or deleted elsewhere
    receives (or stops receiving) events everywhere within that time, and in this process at once."""
    return _subscriptions.get(workspace_id, lambda: tuple(
        (pk, frozenset(events))
        for pk, events in WebhookEndpoint.objects.filter(workspace_id=workspace_id).values_list("pk", "events")
    ))


def webhook_endpoints_subscribed(*, workspace_id: int, event_type: str) -> list[int]:
    """The pks of the workspace's endpoints that receive `event_type`: no SQL while the cache is warm."""
    return [pk for pk, events in webhook_subscriptions(workspace_id=workspace_id) if event_type in events]


def webhook_subscribed(*, workspace_id: int, event_type: str) -> bool:
    """Whether any endpoint of the workspace receives `event_type`. The caller's cheap check before it
    builds an event's data: no SQL while the cache is warm."""
    return webhook_subscribed_to_any(workspace_id=workspace_id, event_types=(event_type,))


def webhook_subscribed_to_any(*, workspace_id: int, event_types: Collection[str]) -> bool:
    """Whether any endpoint of the workspace receives one of `event_types`: one cache lookup for all."""
    return any(not events.isdisjoint(event_types) for _, events in webhook_subscriptions(workspace_id=workspace_id))


def webhook_endpoint_list(*, workspace_id: int) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(workspace_id=workspace_id).order_by("created_at", "pk")


def webhook_endpoint_page(*, workspace_id: int, page: int, page_size: int) -> Page[WebhookEndpoint]:
    """One page (1-based) of the workspace's endpoints and their total."""
    return page_of(webhook_endpoint_list(workspace_id=workspace_id), page=page, page_size=page_size)


def webhook_endpoint_get(*, workspace_id: int, webhook_id: uuid.UUID) -> WebhookEndpoint:
    """The workspace's endpoint; another workspace's is simply not found."""
    endpoint = WebhookEndpoint.objects.filter(workspace_id=workspace_id, public_id=webhook_id).first()
    if endpoint is None:
        raise WebhookEndpointNotFound()
    return endpoint
