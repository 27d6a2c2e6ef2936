"""Reads for webhook endpoints, always scoped by workspace, and the subscription check of the hot path."""

import uuid
from collections.abc import Collection

from django.db.models import QuerySet

from webhooks.errors import WebhookEndpointNotFound
from webhooks.models import WebhookEndpoint
from zeckta.db import Page, page_of
from zeckta.localcache import LocalCache

# Per workspace: (endpoint pk, whether it is a test endpoint, the events it receives) for each of its
# endpoints. One entry holds both modes: a caller that does not know the session's mode asks about both,
# for the price of one read, and each answer below is per mode (a test session's event never costs a live
# endpoint anything, nor the reverse).
Subscriptions = tuple[tuple[int, bool, frozenset[str]], ...]

_subscriptions: LocalCache[Subscriptions] = LocalCache("webhook subscriptions")


def webhook_subscriptions(*, workspace_id: int) -> Subscriptions:
    """Read at most once per LOCAL_CACHE_SECONDS per process: an endpoint created or deleted elsewhere
    receives (or stops receiving) events everywhere within that time, and in this process at once."""
    return _subscriptions.get(
        workspace_id,
        lambda: tuple(
            (pk, is_test, frozenset(events))
            for pk, is_test, events in WebhookEndpoint.objects.filter(workspace_id=workspace_id).values_list(
                "pk", "is_test", "events"
            )
        ),
    )


def webhook_endpoints_subscribed(*, workspace_id: int, event_type: str, test: bool) -> list[int]:
    """The pks of the workspace's endpoints of that mode (test or live) that receive `event_type`: no SQL
    while the cache is warm."""
    return [
        pk
        for pk, is_test, events in webhook_subscriptions(workspace_id=workspace_id)
        if is_test == test and event_type in events
    ]


def webhook_subscribed(*, workspace_id: int, event_type: str, test: bool | None = None) -> bool:
    """Whether any endpoint of the workspace and of that mode receives `event_type` (`test` None: of either
    mode). The caller's cheap check before it builds an event's data: no SQL while the cache is warm."""
    return webhook_subscribed_to_any(workspace_id=workspace_id, event_types=(event_type,), test=test)


def webhook_subscribed_to_any(*, workspace_id: int, event_types: Collection[str], test: bool | None = None) -> bool:
    """Whether any endpoint of the workspace and of that mode (None: either) receives one of `event_types`:
    one cache lookup for all."""
    return any(
        (test is None or is_test == test) and not events.isdisjoint(event_types)
        for _, is_test, events in webhook_subscriptions(workspace_id=workspace_id)
    )


def webhook_endpoint_list(*, workspace_id: int, test: bool) -> QuerySet[WebhookEndpoint]:
    """The workspace's endpoints of one mode: a test key sees the test ones, a live key the live ones."""
    return WebhookEndpoint.objects.filter(workspace_id=workspace_id, is_test=test).order_by("created_at", "pk")


def webhook_endpoint_page(*, workspace_id: int, test: bool, page: int, page_size: int) -> Page[WebhookEndpoint]:
    """One page (1-based) of the workspace's endpoints of that mode and their total."""
    return page_of(webhook_endpoint_list(workspace_id=workspace_id, test=test), page=page, page_size=page_size)


def webhook_endpoint_get(*, workspace_id: int, webhook_id: uuid.UUID, test: bool) -> WebhookEndpoint:
    """The workspace's endpoint of that mode; another workspace's, or one of the other mode, is simply not
    found."""
    endpoint = WebhookEndpoint.objects.filter(workspace_id=workspace_id, public_id=webhook_id, is_test=test).first()
    if endpoint is None:
        raise WebhookEndpointNotFound()
    return endpoint
