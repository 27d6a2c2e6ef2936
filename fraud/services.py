"""Writes of the fraud guard: the one home of a block's record (and of escalation), and the guard's two
hooks on the OTP paths: before a live request or resend is sent, and after a live verify approved.

otp calls `fraud_request_check` and `fraud_approval_note`; it leaves out what the guard never sees (test
keys, reviewer numbers: API.md section 13), and this module leaves out the workspaces whose guard is off
and the safe-listed numbers. The velocity rules are decided in Redis (fraud.guard), the conversion rules
from beat in SQL (otp.fraudrules): both record what they decide here.

Operators and clients write here too (each audited): lifting a block, keeping the safe list.
"""

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from fraud import guard
from fraud.errors import DestinationBlocked
from fraud.guard import GuardUnavailable, Trip, block_forget
from fraud.models import FraudBlock, SafeListEntry, safe_prefix_valid
from fraud.selectors import fraud_block_get, safe_list_prefixes, safe_listed
from fraud.serializers import FraudBlockSerializer
from webhooks.models import Event
from webhooks.services import webhook_event_record
from workspaces.audit import SYSTEM_ACTOR, audit_record
from workspaces.models import AuditEvent, FraudGuardMode, Workspace
from zeckta import metrics
from zeckta.db import advisory_xact_lock
from zeckta.errors import ServiceUnavailable, ValidationFailed
from zeckta.localcache import local_caches_changed

logger = logging.getLogger(__name__)

# Each rule's block length, as the workspace's field that holds it (seconds).
_BLOCK_SECONDS = {
    FraudBlock.Rule.RANGE_VELOCITY: "fraud_range_velocity_block_seconds",
    FraudBlock.Rule.RANGE_CONVERSION: "fraud_range_conversion_block_seconds",
    FraudBlock.Rule.COUNTRY_VELOCITY: "fraud_country_velocity_block_seconds",
    FraudBlock.Rule.COUNTRY_CONVERSION: "fraud_country_conversion_block_seconds",
}


def _guarded(workspace: Workspace, dest: str) -> bool:
    """Whether the guard looks at `dest` at all: not when it is off, not for a safe-listed number (no
    query once the per-process safe-list cache is warm)."""
    if workspace.fraud_guard_mode == FraudGuardMode.OFF:
        return False
    return not safe_listed(safe_list_prefixes(workspace_id=workspace.pk), dest)


@dataclass(frozen=True)
class FraudAdmission:
    """A request the guard let through whose number it counted as new: if the request then sends nothing
    (refused by a send limit, the daily cap, the balance; or a reused session), `fraud_request_unsent`."""

    workspace_id: int
    dest: str
    country: str
    at: datetime


def fraud_request_check(*, workspace: Workspace, dest: str, country: str, now: datetime) -> FraudAdmission | None:
    """Before a live OTP SMS is sent to `dest` (a request, or a resend): one Redis round trip, no SQL.

    In `enforce`, raises DestinationBlocked (403) when its range or country is blocked, or when this
    request trips a velocity rule (it is refused too). In `shadow` the same decisions are recorded and
    nothing is refused. When a rule trips, its block is recorded here (a few queries, once per block).
    Redis down: ServiceUnavailable (503), as the rate limiter answers for sends: a live SMS is never sent
    unguarded. Returns the admission when the number was new to a count, else None.
    """
    if not _guarded(workspace, dest):
        return None
    try:
        verdict = guard.guard_check(workspace=workspace, dest=dest, country=country, now=now)
    except GuardUnavailable as exc:
        logger.error("fraud guard unavailable, refusing a send of workspace %s: %s", workspace.slug, exc)
        raise ServiceUnavailable() from None
    fraud_trips_record(workspace=workspace, trips=verdict.trips, now=now)
    if verdict.refused:
        metrics.FRAUD_REFUSED.inc()
        raise DestinationBlocked(trips=verdict.trips)
    return FraudAdmission(workspace.pk, dest, country, now) if verdict.counted else None


def fraud_relay_check(*, workspace: Workspace, dest: str, country: str) -> None:
    """Before a live relayed SMS is sent to `dest`: every block applies (403 DESTINATION_BLOCKED in
    `enforce`), but the number is not counted, since the service never learns whether its code was entered
    and a rule waiting for approvals would block every relaying workspace's busy ranges. Redis down: 503."""
    if workspace.fraud_guard_mode != FraudGuardMode.ENFORCE or not _guarded(workspace, dest):
        return
    try:
        blocked = guard.guard_blocked(workspace=workspace, dest=dest, country=country)
    except GuardUnavailable as exc:
        logger.error("fraud guard unavailable, refusing a relayed SMS of workspace %s: %s", workspace.slug, exc)
        raise ServiceUnavailable() from None
    if blocked:
        metrics.FRAUD_REFUSED.inc()
        raise DestinationBlocked()


def fraud_request_unsent(admission: FraudAdmission | None) -> None:
    """The request `fraud_request_check` admitted sent nothing after all: its number leaves the counts
    again, so that only numbers sent to count (a workspace at its daily cap or out of units, its users
    retrying, must not find their country blocked once it is served again). Never raises."""
    if admission is not None:
        guard.guard_uncount(
            workspace_id=admission.workspace_id, dest=admission.dest, country=admission.country, now=admission.at
        )


def fraud_trips_record(*, workspace: Workspace, trips: Iterable[Trip], now: datetime) -> None:
    """Records the blocks that velocity trips called for. Also called again by a caller whose transaction
    rolled back with the refusal (an Idempotency-Key's): the block stands in Redis either way, and its
    record must too."""
    for trip in trips:
        fraud_block_record(
            workspace=workspace,
            scope=trip.scope,
            value=trip.value,
            rule=trip.rule,
            mode=trip.mode,
            evidence=trip.evidence,
            now=now,
        )


def fraud_approval_note(*, workspace: Workspace, dest: str, country: str | None, at: datetime) -> None:
    """After a live verify APPROVED committed: the range and country of `dest` converted. Never raises."""
    if _guarded(workspace, dest):
        guard.guard_approved(workspace=workspace, dest=dest, country=country, at=at)


def _block_seconds(*, workspace: Workspace, rule: str, last: FraudBlock | None, now: datetime) -> float:
    """The rule's block length; twice the last block's when that target's last block (of the same mode)
    ended within the workspace's escalation memory, if that is longer; never past the workspace's most."""
    seconds = float(getattr(workspace, _BLOCK_SECONDS[FraudBlock.Rule(rule)]))
    if last is not None:
        ended = min(last.ends_at, last.lifted_at or last.ends_at)
        if now - ended <= timedelta(seconds=workspace.fraud_escalation_memory_seconds):
            seconds = max(seconds, 2 * (last.ends_at - last.created_at).total_seconds())
    return min(seconds, float(workspace.fraud_block_max_seconds))


@transaction.atomic
def fraud_block_record(
    *,
    workspace: Workspace,
    scope: str,
    value: str,
    rule: str,
    mode: str,
    evidence: dict[str, int],
    now: datetime,
) -> FraudBlock | None:
    """Records a block of `value` (a range or a country) for `rule`, in `mode`, with the evidence that
    tripped it. The one home of escalation (`_block_seconds`). Returns None, writing nothing, when that
    target already has an active block of that mode (its Redis copy is rewritten with its real end).

    On commit: the block is mirrored into Redis with its real end (the velocity script set it with the
    rule's own length at once), counted in zeckta_fraud_decisions_total, and its `fraud.blocked` event
    (written in this transaction, to the workspace's live endpoints) goes out.
    """
    # Two trips of one target at once (two web processes, or beat and a request) write one block.
    advisory_xact_lock(f"fraud-block:{workspace.pk}:{scope}:{value}")
    # At most one block of a target and mode is active, and it is the newest (fraud_block_ws_target_idx).
    last = (
        FraudBlock.objects.filter(workspace=workspace, scope=scope, value=value, mode=mode)
        .order_by("-created_at", "-id")
        .first()
    )
    if last is not None and last.lifted_at is None and last.ends_at > now:
        transaction.on_commit(lambda: _mirror(last, now=now))
        return None
    seconds = _block_seconds(workspace=workspace, rule=rule, last=last, now=now)
    block = FraudBlock.objects.create(
        workspace=workspace,
        scope=scope,
        value=value,
        rule=rule,
        mode=mode,
        created_at=now,
        ends_at=now + timedelta(seconds=seconds),
        evidence=evidence,
    )
    webhook_event_record(
        workspace_id=workspace.pk,
        event_type=Event.FRAUD_BLOCKED,
        at=now,
        data=dict(FraudBlockSerializer(block).data),
        key=f"{Event.FRAUD_BLOCKED.value}:{block.public_id}",
    )
    logger.warning(
        "fraud guard: %s %s of workspace %s blocked by %s (%s) until %s, evidence %s",
        scope,
        value,
        workspace.slug,
        rule,
        mode,
        block.ends_at.isoformat(),
        evidence,
    )

    def committed() -> None:
        metrics.FRAUD_DECISIONS.labels(rule=rule, mode=mode).inc()
        _mirror(block, now=now)

    transaction.on_commit(committed)
    return block


def _mirror(block: FraudBlock, *, now: datetime) -> None:
    try:
        guard.block_mirror(
            workspace_id=block.workspace_id,
            mode=block.mode,
            scope=block.scope,
            value=block.value,
            ends_at=block.ends_at,
            now=now,
        )
    except redis.RedisError as exc:
        # The velocity script set the block already, or beat's mirror writes it within its interval.
        logger.warning("fraud guard: block %s not mirrored into Redis yet: %s", block.public_id, exc)


# The fewest days a block's row is kept after its end: GET /v1/messaging/fraud/blocks lists 30 days of them
# (fraud.selectors), and escalation looks back up to the workspace's memory (at most 30 days) from a block's end.
FRAUD_BLOCK_RETENTION_DAYS_MIN = 31


def fraud_blocks_purge(*, now: datetime | None = None) -> int:
    """Deletes the blocks and shadow decisions that ended, or were lifted, more than FRAUD_BLOCK_RETENTION_DAYS
    (at least FRAUD_BLOCK_RETENTION_DAYS_MIN) ago; returns how many. An active block is never touched. From the
    hourly purge (otp.tasks); blocks are rare, so a scan of the table is cheap."""
    now = now or timezone.now()
    days = max(settings.FRAUD_BLOCK_RETENTION_DAYS, FRAUD_BLOCK_RETENTION_DAYS_MIN)
    cutoff = now - timedelta(days=days)
    deleted, _ = FraudBlock.objects.filter(Q(ends_at__lt=cutoff) | Q(lifted_at__lt=cutoff)).delete()
    return deleted


SAFE_LIST_NOTE_MAX = 200  # characters, as the column holds


@transaction.atomic
def fraud_block_lift(*, workspace: Workspace, block_id: uuid.UUID, actor: str = SYSTEM_ACTOR) -> FraudBlock:
    """Lifts the workspace's block at once (API.md section 13): its range or country is sent to again, and the
    rule's counts for it start again from the lift (`fraud.guard.block_forget`, once the lift is committed).

    Idempotent: a block already lifted, or already ended, is returned as it is; nothing is written or audited.
    Raises FraudBlockNotFound for an id that is not this workspace's.
    """
    now = timezone.now()
    block = fraud_block_get(workspace=workspace, block_id=block_id)
    # One conditional UPDATE: of two concurrent lifts one changes the row, and only that one is audited.
    lifted = FraudBlock.objects.filter(pk=block.pk, lifted_at__isnull=True, ends_at__gt=now).update(
        lifted_at=now, lifted_by=(actor or SYSTEM_ACTOR)[:150]
    )
    if lifted:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.FRAUD_BLOCK_LIFTED,
            workspace=workspace,
            target=str(block.public_id),
            at=now,
            detail={
                "scope": block.scope,
                "value": block.value,
                "rule": block.rule,
                "mode": block.mode,
                "ends_at": block.ends_at.isoformat(),
            },
        )
        scope, value = block.scope, block.value

        def forget_in_redis() -> None:  # a function, not a partial: Django logs a robust hook's __qualname__
            block_forget(workspace_id=workspace.pk, scope=scope, value=value)

        # After commit: a rolled-back lift must leave the block in force. Robust: the lift stands even when
        # Redis cannot be reached now; the mirror (fraud.guard.blocks_mirror, from beat) drops the key then.
        transaction.on_commit(forget_in_redis, robust=True)
    block.refresh_from_db(fields=["lifted_at", "lifted_by"])  # a concurrent lift's, when that one won
    return block


def safe_list_add(*, workspace: Workspace, prefix: str, note: str = "", actor: str = SYSTEM_ACTOR) -> SafeListEntry:
    """Puts a number or prefix (`+23320`) on the workspace's safe list: the guard never blocks, refuses or counts
    a number under it, in every process within LOCAL_CACHE_SECONDS."""
    prefix = prefix.strip()
    try:
        safe_prefix_valid(prefix)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], errors={"prefix": exc.messages}) from None
    try:
        with transaction.atomic():
            entry = SafeListEntry.objects.create(
                workspace=workspace, prefix=prefix, note=note.strip()[:SAFE_LIST_NOTE_MAX], created_by=actor[:150]
            )
            audit_record(
                actor=actor,
                action=AuditEvent.Action.SAFE_LIST_ADDED,
                workspace=workspace,
                target=prefix,
                detail={"note": entry.note},
            )
            local_caches_changed()  # fraud.selectors.safe_list_prefixes keeps each workspace's list a moment
    except IntegrityError:
        message = f"The safe list already holds {prefix}."
        raise ValidationFailed(message, errors={"prefix": [message]}) from None
    return entry


@transaction.atomic
def safe_list_remove(*, entry: SafeListEntry, actor: str = SYSTEM_ACTOR) -> None:
    """Takes the entry off its workspace's safe list; removing it twice changes nothing and is audited once."""
    deleted, _ = SafeListEntry.objects.filter(pk=entry.pk).delete()
    if deleted:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.SAFE_LIST_REMOVED,
            workspace=entry.workspace,
            target=entry.prefix,
            detail={"note": entry.note},
        )
        local_caches_changed()
