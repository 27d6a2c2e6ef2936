"""Writes of the fraud guard: the one home of a block's record (and of escalation), and the guard's two
hooks on the OTP paths: before a live request or resend is sent, and after a live verify approved.

otp calls `fraud_request_check` and `fraud_approval_note`; it leaves out what the guard never sees (test
keys, reviewer numbers: API.md section 13), and this module leaves out the workspaces whose guard is off
and the safe-listed numbers. The velocity rules are decided in Redis (fraud.guard), the conversion rules
from beat in SQL (otp.fraudrules): both record what they decide here.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.db import transaction

from fraud import guard
from fraud.errors import DestinationBlocked
from fraud.guard import GuardUnavailable, Trip
from fraud.models import FraudBlock
from fraud.selectors import safe_list_prefixes, safe_listed
from fraud.serializers import FraudBlockSerializer
from webhooks.models import Event
from webhooks.services import webhook_event_record
from workspaces.models import FraudGuardMode, Workspace
from zeckta import metrics
from zeckta.db import advisory_xact_lock
from zeckta.errors import ServiceUnavailable

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
