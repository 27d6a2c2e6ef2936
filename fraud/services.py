"""Writes of operators and clients on the guard: lifting a block, keeping the safe list. Each is audited."""

import uuid

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from fraud.guard import block_forget
from fraud.models import FraudBlock, SafeListEntry, safe_prefix_valid
from fraud.selectors import fraud_block_get
from workspaces.audit import SYSTEM_ACTOR, audit_record
from workspaces.models import AuditEvent, Workspace
from zeckta.errors import ValidationFailed
from zeckta.localcache import local_caches_changed

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
