"""Writes for webhooks: endpoints (created, rotated, deleted: each audited) and the events' outbox.

Other apps record an event with `webhook_event_record`, inside the transaction of the state change it
reports, after the cheap `webhooks.selectors.webhook_subscribed` check.
"""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webhooks.delivery import webhook_deliveries_enqueue_on_commit
from webhooks.errors import WebhookEndpointLimitReached, WebhookEndpointNotFound
from webhooks.models import Event, WebhookDelivery, WebhookEndpoint
from webhooks.selectors import webhook_endpoints_subscribed
from webhooks.signing import secret_encrypt, secret_new, secret_prefix
from webhooks.transport import url_problem
from workspaces.audit import SYSTEM_ACTOR, audit_record
from workspaces.models import AuditEvent, Workspace
from zeckta.db import advisory_xact_lock
from zeckta.errors import ValidationFailed
from zeckta.localcache import local_caches_changed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointWithSecret:
    """An endpoint and its raw secret: the only time the secret exists outside its encryption."""

    endpoint: WebhookEndpoint
    secret: str


def events_problem(events: list[str]) -> str | None:
    """Why `events` is not a subscription, or None."""
    if not events:
        return "Name at least one event."
    unknown = [event for event in events if event not in Event.values]
    if unknown:
        return f"Unknown event {unknown[0]!r}: use {', '.join(Event.values)}."
    return None


def _checked(*, url: str, events: list[str]) -> list[str]:
    """The events without repeats, in the order given; ValidationFailed naming the field otherwise."""
    problems = {}
    if problem := url_problem(url):
        problems["url"] = [problem]
    if problem := events_problem(events):
        problems["events"] = [problem]
    if problems:
        raise ValidationFailed(next(iter(problems.values()))[0], errors=problems)
    return list(dict.fromkeys(events))


def webhook_endpoint_create(
    *, workspace: Workspace, url: str, events: list[str], test: bool = False, actor: str = SYSTEM_ACTOR
) -> EndpointWithSecret:
    """Adds an endpoint; returns it with its secret, which is not stored in the clear and never shown again.

    `test`: made with a test key, it is a test endpoint (API.md section 10): it receives test sessions'
    events only. Each mode has its own WEBHOOK_MAX_ENDPOINTS_PER_WORKSPACE, so that a test key cannot use
    up the live endpoints' room."""
    events = _checked(url=url, events=events)
    secret = secret_new()
    limit = settings.WEBHOOK_MAX_ENDPOINTS_PER_WORKSPACE
    with transaction.atomic():
        # Serialises the workspace's creations, so that two at once cannot both be the tenth.
        advisory_xact_lock(f"webhook-endpoints:{workspace.pk}")
        if WebhookEndpoint.objects.filter(workspace=workspace, is_test=test).count() >= limit:
            raise WebhookEndpointLimitReached(limit)
        endpoint = WebhookEndpoint.objects.create(
            workspace=workspace,
            url=url,
            events=events,
            encrypted_secret=secret_encrypt(secret),
            secret_prefix=secret_prefix(secret),
            is_test=test,
        )
        _audit(
            actor=actor,
            action=AuditEvent.Action.WEBHOOK_CREATED,
            endpoint=endpoint,
            events=events,
            mode="test" if test else "live",
        )
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


def webhook_endpoint_rotate_secret(
    *, workspace: Workspace, webhook_id: uuid.UUID, test: bool, actor: str = SYSTEM_ACTOR
) -> EndpointWithSecret:
    """Gives the endpoint a new secret; the current one keeps signing beside it for
    WEBHOOK_SECRET_OVERLAP_SECONDS. A secret still in its overlap from an earlier rotation stops at once:
    two signatures at most, the current secret's and the one before. An endpoint of the other mode (`test`)
    is not found, as another workspace's."""
    secret = secret_new()
    now = timezone.now()
    with transaction.atomic():
        # Under the row lock: of two rotations at once, the second keeps the first one's secret as the
        # previous, never the one the first replaced (which would leave the first's secret unusable).
        endpoint = _locked(workspace=workspace, webhook_id=webhook_id, test=test)
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            encrypted_previous_secret=endpoint.encrypted_secret,
            previous_secret_expires_at=now + timedelta(seconds=settings.WEBHOOK_SECRET_OVERLAP_SECONDS),
            encrypted_secret=secret_encrypt(secret),
            secret_prefix=secret_prefix(secret),
            updated_at=now,
        )
        _audit(
            actor=actor,
            action=AuditEvent.Action.WEBHOOK_SECRET_ROTATED,
            endpoint=endpoint,
            previous_secret_prefix=endpoint.secret_prefix,
        )
    endpoint.refresh_from_db()
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


@transaction.atomic
def webhook_endpoint_delete(
    *, workspace: Workspace, webhook_id: uuid.UUID, test: bool, actor: str = SYSTEM_ACTOR
) -> None:
    """Deletes the endpoint and its deliveries, sent or not: nothing more goes to its URL. An endpoint of
    the other mode (`test`) is not found."""
    endpoint = _locked(workspace=workspace, webhook_id=webhook_id, test=test)
    _audit(actor=actor, action=AuditEvent.Action.WEBHOOK_DELETED, endpoint=endpoint)
    endpoint.delete()  # its deliveries by cascade; forget_on_save clears the subscription caches


@transaction.atomic
def webhook_endpoint_clear_failing(*, endpoint: WebhookEndpoint, actor: str = SYSTEM_ACTOR) -> bool:
    """Staff's "mark not failing"; False when it was not failing."""
    cleared = WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=False).update(
        failing_since=None, updated_at=timezone.now()
    )
    if cleared:
        _audit(actor=actor, action=AuditEvent.Action.WEBHOOK_CHANGED, endpoint=endpoint, failing="cleared")
    return bool(cleared)


def _locked(*, workspace: Workspace, webhook_id: uuid.UUID, test: bool) -> WebhookEndpoint:
    # of=self: the workspace row is not locked along (prepaid OTP requests update it).
    endpoint = (
        WebhookEndpoint.objects.select_for_update(of=("self",))
        .select_related("workspace")
        .filter(workspace=workspace, public_id=webhook_id, is_test=test)
        .first()
    )
    if endpoint is None:
        raise WebhookEndpointNotFound()
    return endpoint


def _audit(*, actor: str, action: AuditEvent.Action, endpoint: WebhookEndpoint, **detail: Any) -> None:
    local_caches_changed()  # every change to an endpoint is audited here: subscriptions are cached
    audit_record(
        actor=actor,
        action=action,
        workspace=endpoint.workspace,
        target=str(endpoint.public_id),
        detail={"url": endpoint.url, **detail},
    )


# --- Events ------------------------------------------------------------------------------------


def event_body(*, event_type: str, at: datetime, data: dict[str, Any]) -> str:
    """The JSON text every attempt sends: `timestamp` is when the event happened, to the microsecond."""
    timestamp = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return json.dumps(
        {"type": event_type, "timestamp": timestamp, "data": data}, separators=(",", ":"), ensure_ascii=False
    )


def webhook_event_record(
    *,
    workspace_id: int,
    event_type: str,
    at: datetime,
    data: dict[str, Any],
    key: str | None = None,
    test: bool = False,
) -> int:
    """Writes one delivery of the event per endpoint of the workspace that receives it; returns how many.
    `test`: the event of a test session, for the test endpoints only; a live one goes to the live ones.

    Call it inside the transaction of the state change it reports: the deliveries commit or roll back
    with that change, and are published to the workers only once it commits. `data` is the object the
    receivers get (never an OTP code); it is serialized here, once, and every attempt sends those bytes.
    Without an endpoint that receives `event_type` it returns 0 without any SQL (once the cache is warm).

    `key` names an event that happens once ("otp.approved:<session id>"): an endpoint that has it already
    gets nothing more, and a concurrent recording of the same key waits for the first and then skips.
    """
    if event_type not in Event.values:
        raise ValueError(f"unknown webhook event {event_type!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("webhook_event_record must run inside the transaction of the change it reports")
    endpoints = webhook_endpoints_subscribed(workspace_id=workspace_id, event_type=event_type, test=test)
    if not endpoints:
        return 0
    body = event_body(event_type=event_type, at=at, data=data)
    now = timezone.now()
    deliveries = [
        WebhookDelivery(
            public_id=uuid.uuid4(),
            endpoint_id=pk,
            event_type=event_type,
            event_key=key or "",
            event_at=at,
            body=body,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            retry_until=now + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS),
        )
        for pk in endpoints
    ]
    if key is None:
        ids = [delivery.pk for delivery in WebhookDelivery.objects.bulk_create(deliveries)]
    else:
        # ON CONFLICT DO NOTHING leaves the pks unset: the rows written are read back by their public ids.
        WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        ids = list(
            WebhookDelivery.objects.filter(public_id__in=[d.public_id for d in deliveries]).values_list("pk", flat=True)
        )
    webhook_deliveries_enqueue_on_commit(delivery_ids=ids)
    return len(ids)


def webhook_delivery_replay(*, delivery: WebhookDelivery, actor: str = SYSTEM_ACTOR) -> bool:
    """Sends a delivery again (staff, from the admin): the same body and `webhook-id`, a fresh retry
    window. False when it is still under way (pending or sending): it will be sent anyway."""
    now = timezone.now()
    with transaction.atomic():
        replayed = WebhookDelivery.objects.filter(pk=delivery.pk, status__in=WebhookDelivery.FINISHED).update(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at=now,
            claimed_at=None,
            finished_at=None,
            retry_until=now + timedelta(seconds=settings.WEBHOOK_RETRY_WINDOW_SECONDS),
            updated_at=now,
        )
        if not replayed:
            return False
        endpoint = WebhookEndpoint.objects.select_related("workspace").get(pk=delivery.endpoint_id)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.WEBHOOK_REPLAYED,
            workspace=endpoint.workspace,
            target=str(endpoint.public_id),
            detail={
                "webhook_id": delivery.webhook_id,
                "event_type": delivery.event_type,
                "previous_status": delivery.status,
            },
        )
        webhook_deliveries_enqueue_on_commit(delivery_ids=[delivery.pk])
    logger.info("webhook %s replayed by %s", delivery.webhook_id, actor)
    return True
