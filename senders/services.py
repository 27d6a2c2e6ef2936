"""Writes for sender names: workspaces submit them, staff approve or reject them. Each change is audited."""

import re
import uuid
from datetime import datetime

import phonenumbers
from django.db import IntegrityError, transaction
from django.utils import timezone

from senders.errors import SenderNameExists, SenderNameNotEditable, SenderNameNotFound
from senders.models import SenderName
from senders.selectors import live_sender_names, sender_name_get
from workspaces.audit import SYSTEM_ACTOR, audit_record, field_changes
from workspaces.models import AuditEvent, Workspace
from zeckta.errors import ValidationFailed
from zeckta.localcache import local_caches_changed

_ALPHANUMERIC_RE = re.compile(r"[A-Za-z0-9 .\-]{3,11}")
_SHORTCODE_RE = re.compile(r"[0-9]{3,8}")

# An APPROVED sender is what OTP requests send from: changing it would need a new approval first.
EDITABLE_STATUSES = (SenderName.Status.PENDING, SenderName.Status.REJECTED)


def sender_name_problem(name: str, sender_type: str) -> str | None:
    """Why `name` is not a valid sender name of `sender_type`, or None when it is."""
    if sender_type == SenderName.Type.ALPHANUMERIC:
        if not _ALPHANUMERIC_RE.fullmatch(name) or not re.search(r"[A-Za-z]", name):
            return "An alphanumeric sender has 3 to 11 of A-Z a-z 0-9 space . - with at least one letter."
    elif sender_type == SenderName.Type.MSISDN:
        if not _is_e164(name):
            return "An msisdn sender is a valid phone number in E.164 form (+233202007745)."
    elif sender_type == SenderName.Type.SHORTCODE:
        if not _SHORTCODE_RE.fullmatch(name):
            return "A shortcode sender has 3 to 8 digits."
    else:
        return f"Unknown sender type {sender_type!r}: use alphanumeric, msisdn or shortcode."
    return None


def _is_e164(value: str) -> bool:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    return (
        phonenumbers.is_valid_number(number)
        and phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == value
    )


def _check(name: str, sender_type: str) -> None:
    problem = sender_name_problem(name, sender_type)
    if problem:
        raise ValidationFailed(problem, errors={"sender": [problem]})


def sender_name_create(
    *,
    workspace: Workspace,
    name: str,
    sender_type: str = SenderName.Type.ALPHANUMERIC,
    purpose: str = "",
    country_code: str = "",
    approve: bool = False,
    actor: str = SYSTEM_ACTOR,
) -> SenderName:
    """Submits a sender name; `approve` (staff only) approves it at once, audited as a second event."""
    _check(name, sender_type)
    now = timezone.now()
    try:
        with transaction.atomic():
            sender_name = SenderName.objects.create(
                workspace=workspace,
                name=name,
                sender_type=sender_type,
                purpose=purpose,
                country_code=country_code.upper(),
                status=SenderName.Status.APPROVED if approve else SenderName.Status.PENDING,
                approved_at=now if approve else None,
            )
            _audit(actor=actor, action=AuditEvent.Action.SENDER_SUBMITTED, sender_name=sender_name, at=now)
            if approve:
                # Its own event, so that "who approved this sender" has one answer however it was approved.
                _audit(actor=actor, action=AuditEvent.Action.SENDER_APPROVED, sender_name=sender_name, at=now)
            return sender_name
    except IntegrityError:
        raise SenderNameExists(name) from None


def sender_name_update(
    *,
    workspace: Workspace,
    sender_name_id: uuid.UUID,
    name: str,
    sender_type: str,
    purpose: str,
    country_code: str = "",
    actor: str = SYSTEM_ACTOR,
) -> SenderName:
    """Replaces a PENDING or REJECTED request and submits it again: PENDING, no reason, a new submittedAt."""
    _check(name, sender_type)
    now = timezone.now()
    try:
        # One conditional UPDATE: a sender staff approve meanwhile is never changed behind their back.
        with transaction.atomic():
            updated = (
                live_sender_names(workspace)
                .filter(public_id=sender_name_id, status__in=EDITABLE_STATUSES)
                .update(
                    name=name,
                    sender_type=sender_type,
                    purpose=purpose,
                    country_code=country_code.upper(),
                    status=SenderName.Status.PENDING,
                    status_reason="",
                    approved_at=None,
                    submitted_at=now,
                    updated_at=now,
                )
            )
            if updated:
                local_caches_changed()
                audit_record(
                    actor=actor,
                    action=AuditEvent.Action.SENDER_UPDATED,
                    workspace=workspace,
                    target=str(sender_name_id),
                    at=now,
                    detail={"sender": name, "sender_type": sender_type, "country_code": country_code.upper()},
                )
    except IntegrityError:
        raise SenderNameExists(name) from None
    sender_name = sender_name_get(workspace=workspace, sender_name_id=sender_name_id)  # 404 if not ours
    if not updated:
        raise SenderNameNotEditable()
    return sender_name


@transaction.atomic
def sender_name_delete(*, workspace: Workspace, sender_name_id: uuid.UUID, actor: str = SYSTEM_ACTOR) -> None:
    """Deletes the workspace's sender name, whatever its status and whatever used it (API.md section 5).

    A soft delete: the row stays, because the OTP sessions sent under it still refer to it, but it is
    gone from the API and can send no more; the same name may be requested again.
    """
    now = timezone.now()
    # One conditional UPDATE: of two concurrent deletes, one is audited; an OTP request that already
    # holds the name finishes with it, every later one finds no approved name.
    deleted = live_sender_names(workspace).filter(public_id=sender_name_id).update(deleted_at=now, updated_at=now)
    if not deleted:
        raise SenderNameNotFound()
    sender_name = SenderName.objects.get(workspace=workspace, public_id=sender_name_id)
    sender_name.workspace = workspace  # the filter proved it; saves the audit row a query
    _audit(actor=actor, action=AuditEvent.Action.SENDER_DELETED, sender_name=sender_name, at=now)


@transaction.atomic
def sender_name_describe(
    *, sender_name: SenderName, purpose: str, country_code: str, actor: str = SYSTEM_ACTOR
) -> SenderName:
    """Staff's edit of what a name is for and where it sends: no new approval needed, audited with the old
    and new values."""
    current = _lock(sender_name)
    values = {"purpose": purpose, "country_code": country_code.upper()}
    changes = field_changes(before={name: getattr(current, name) for name in values}, after=values, fields=values)
    if changes:
        now = timezone.now()
        SenderName.objects.filter(pk=current.pk).update(**{name: values[name] for name in changes}, updated_at=now)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.SENDER_UPDATED,
            workspace=current.workspace,
            target=str(current.public_id),
            detail={"sender": current.name, "changes": changes},
            at=now,
        )
    sender_name.refresh_from_db()
    return sender_name


@transaction.atomic
def sender_name_make_default(*, sender_name: SenderName, actor: str = SYSTEM_ACTOR) -> SenderName:
    """Makes an APPROVED, undeleted name the workspace's default sender (the Supabase hook sends from it),
    unmarking the one before (senders_sendername_one_default_per_workspace); audited. Raises
    ValidationFailed for a name that cannot send."""
    current = _lock(sender_name)
    if current.status != SenderName.Status.APPROVED or current.deleted_at is not None:
        raise ValidationFailed("Only an approved sender name can be the default.")
    if not current.is_default:
        now = timezone.now()
        # Unmarked first: the unique index allows one default at a time, even within this transaction.
        previous = list(
            SenderName.objects.filter(workspace=current.workspace, is_default=True).values_list("name", flat=True)
        )
        SenderName.objects.filter(workspace=current.workspace, is_default=True).update(is_default=False, updated_at=now)
        SenderName.objects.filter(pk=current.pk).update(is_default=True, updated_at=now)
        audit_record(
            actor=actor,
            action=AuditEvent.Action.SENDER_UPDATED,
            workspace=current.workspace,
            target=str(current.public_id),
            detail={
                "sender": current.name,
                "changes": {"is_default": {"old": False, "new": True}},
                "previous": previous,
            },
            at=now,
        )
    sender_name.refresh_from_db()
    return sender_name


@transaction.atomic
def sender_name_approve(*, sender_name: SenderName, actor: str = SYSTEM_ACTOR) -> SenderName:
    """Approves the sender name; approving an APPROVED one changes nothing and records no audit event."""
    now = timezone.now()
    # Under the row lock: of two staff approving at once, the second sees APPROVED and does nothing.
    current = _lock(sender_name)
    if current.status != SenderName.Status.APPROVED:
        previous = current.status
        current.status, current.status_reason, current.approved_at, current.updated_at = (
            SenderName.Status.APPROVED,
            "",
            now,
            now,
        )
        current.save(update_fields=["status", "status_reason", "approved_at", "updated_at"])
        _audit(
            actor=actor, action=AuditEvent.Action.SENDER_APPROVED, sender_name=current, at=now, previous_status=previous
        )
    sender_name.refresh_from_db()
    return sender_name


@transaction.atomic
def sender_name_reject(*, sender_name: SenderName, reason: str, actor: str = SYSTEM_ACTOR) -> SenderName:
    """Rejects the sender name with a reason; repeating the same rejection changes nothing and is not audited."""
    reason = reason.strip()[:500]
    if not reason:
        raise ValidationFailed("a rejection needs a reason", errors={"reason": ["a rejection needs a reason"]})
    now = timezone.now()
    current = _lock(sender_name)
    if (current.status, current.status_reason) != (SenderName.Status.REJECTED, reason):
        previous = current.status
        current.status, current.status_reason, current.approved_at, current.updated_at = (
            SenderName.Status.REJECTED,
            reason,
            None,
            now,
        )
        current.save(update_fields=["status", "status_reason", "approved_at", "updated_at"])
        _audit(
            actor=actor,
            action=AuditEvent.Action.SENDER_REJECTED,
            sender_name=current,
            at=now,
            previous_status=previous,
            reason=reason,
        )
    sender_name.refresh_from_db()
    return sender_name


def _lock(sender_name: SenderName) -> SenderName:
    """The row as committed, locked until the end of the transaction; SenderNameNotFound when it was deleted."""
    # of=self: lock the sender row only, not the joined workspace row that OTP debits update.
    rows = SenderName.objects.select_for_update(of=("self",)).select_related("workspace")
    current = rows.filter(pk=sender_name.pk, deleted_at__isnull=True).first()
    if current is None:
        raise SenderNameNotFound(f"no sender name with id {str(sender_name.public_id)!r}")
    return current


def _audit(
    *, actor: str, action: AuditEvent.Action, sender_name: SenderName, at: datetime | None = None, **detail: str
) -> None:
    local_caches_changed()  # every change to a sender name is audited here: approved names are cached
    audit_record(
        actor=actor,
        action=action,
        workspace=sender_name.workspace,
        target=str(sender_name.public_id),
        at=at,
        detail={
            "sender": sender_name.name,
            "sender_type": sender_name.sender_type,
            "status": sender_name.status,
            **detail,
        },
    )
