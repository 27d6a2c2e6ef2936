"""Test mode (API.md section 10): the test inbox, where a test SMS is kept instead of sent, and reviewer
numbers, whose requests get a fixed code and send nothing.
"""

import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from otp.crypto import encrypt_reviewer_code
from otp.destinations import DestinationRefused, destination_parse
from otp.models import OtpSession, ReviewerNumber, SmsMessage, TestInboxMessage
from workspaces.audit import SYSTEM_ACTOR, audit_record, field_changes
from workspaces.models import AuditEvent, Workspace
from zeckta.errors import ValidationFailed
from zeckta.localcache import local_caches_changed

logger = logging.getLogger(__name__)

# delivery.route of a test SMS: it went to the test inbox, not to a provider.
TEST_INBOX_ROUTE = "test-inbox"


def inbox_keep(message: SmsMessage, *, now: datetime) -> None:
    """A test SMS: `delivered` at once, never sent, charged or counted towards the daily cap. Its text goes
    to the test inbox in the request's transaction, so the inbox shows it as soon as the request answers."""
    inbox_text = message.encrypted_text  # encrypted with the test inbox's key
    message.status = SmsMessage.Status.DELIVERED
    message.encrypted_text = None  # no retry copy: nothing will ever send it
    message.route_name = TEST_INBOX_ROUTE
    message.delivered_at = message.finished_at = now
    message.save()
    TestInboxMessage.objects.create(
        workspace_id=message.workspace_id,
        session=message.session,
        dest=message.to,
        src=message.src,
        encrypted_text=inbox_text,
        created_at=now,
    )


def inbox_purge(*, now: datetime | None = None) -> int:
    """Deletes test SMS older than TEST_INBOX_RETENTION_SECONDS (they hold readable codes); returns how many.
    Their sessions follow the ordinary session purge."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.TEST_INBOX_RETENTION_SECONDS)
    deleted, _ = TestInboxMessage.objects.filter(created_at__lte=cutoff).delete()
    return deleted


def reviewer_number_used(session: OtpSession, *, workspace: Workspace, actor: str, now: datetime) -> None:
    """A code was issued to a reviewer number: nothing is sent, and staff can see each use."""
    audit_record(
        actor=actor,
        action=AuditEvent.Action.REVIEWER_NUMBER_USED,
        workspace=workspace,
        target=session.dest,
        at=now,
        detail={
            "session": str(session.public_id),
            "mode": "test" if session.is_test else "live",
            "resends": session.resends,
        },
    )
    logger.info("reviewer number used for session %s: no SMS sent", session.public_id)


# The fixed code: what a verify accepts (4 to 10 ASCII digits).
REVIEWER_CODE_RE = re.compile(r"[0-9]{4,10}")


REVIEWER_NUMBER_EDITABLE_FIELDS = frozenset({"dest", "note", "enabled"})


REVIEWER_NUMBER_EXISTS = "This workspace already has this reviewer number."


def reviewer_dest_problem(dest: str) -> str | None:
    try:
        destination_parse(dest)
    except DestinationRefused as exc:
        return str(exc)
    return None


def reviewer_code_problem(code: str) -> str | None:
    if not REVIEWER_CODE_RE.fullmatch(code):
        return "The fixed code must be 4 to 10 digits (0-9)."
    return None


def _check_reviewer_values(*, dest: str | None, code: str | None) -> None:
    for field, problem in (
        ("dest", dest is not None and reviewer_dest_problem(dest)),
        ("code", code is not None and reviewer_code_problem(code)),
    ):
        if problem:
            raise ValidationFailed.for_field(field, problem)


def reviewer_number_add(
    *, workspace: Workspace, dest: str, code: str, note: str = "", enabled: bool = True, actor: str = SYSTEM_ACTOR
) -> ReviewerNumber:
    """Adds a reviewer number: requests to it get `code` and send nothing. Audited (never with the code)."""
    _check_reviewer_values(dest=dest, code=code)
    number = ReviewerNumber(
        workspace=workspace,
        dest=dest,
        encrypted_code=encrypt_reviewer_code(code),
        note=note,
        enabled=enabled,
        created_by=actor,
    )
    try:
        with transaction.atomic():
            number.save(force_insert=True)
            audit_record(
                actor=actor,
                action=AuditEvent.Action.REVIEWER_NUMBER_ADDED,
                workspace=workspace,
                target=dest,
                detail={"note": note, "enabled": enabled},
            )
    except IntegrityError:
        raise ValidationFailed.for_field("dest", REVIEWER_NUMBER_EXISTS) from None
    local_caches_changed()
    return number


def reviewer_number_update(
    *,
    reviewer_number: ReviewerNumber,
    values: Mapping[str, Any],
    code: str | None = None,
    actor: str = SYSTEM_ACTOR,
) -> ReviewerNumber:
    """Changes a reviewer number's destination, note or enabled flag, and its code when `code` is given;
    audited once with the old and new values (the code only as `code_changed`)."""
    unknown = set(values) - REVIEWER_NUMBER_EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable here: {', '.join(sorted(unknown))}")
    _check_reviewer_values(dest=values.get("dest"), code=code)
    try:
        with transaction.atomic():
            current = ReviewerNumber.objects.select_for_update().select_related("workspace").get(pk=reviewer_number.pk)
            changes: dict[str, Any] = field_changes(
                before={name: getattr(current, name) for name in values}, after=values, fields=values
            )
            update = {name: values[name] for name in changes}
            if code is not None:
                update["encrypted_code"] = encrypt_reviewer_code(code)
            if update:
                ReviewerNumber.objects.filter(pk=current.pk).update(**update, updated_at=timezone.now())
                detail = {"changes": changes, **({"code_changed": True} if code is not None else {})}
                audit_record(
                    actor=actor,
                    action=AuditEvent.Action.REVIEWER_NUMBER_CHANGED,
                    workspace=current.workspace,
                    target=values.get("dest", current.dest),
                    detail=detail,
                )
    except IntegrityError:
        raise ValidationFailed.for_field("dest", REVIEWER_NUMBER_EXISTS) from None
    local_caches_changed()
    reviewer_number.refresh_from_db()
    return reviewer_number


@transaction.atomic
def reviewer_number_delete(*, reviewer_number: ReviewerNumber, actor: str = SYSTEM_ACTOR) -> None:
    """Deletes it: from now on the number gets real SMS like any other. Audited."""
    deleted, _ = ReviewerNumber.objects.filter(pk=reviewer_number.pk).delete()
    if deleted:
        audit_record(
            actor=actor,
            action=AuditEvent.Action.REVIEWER_NUMBER_DELETED,
            workspace=reviewer_number.workspace,
            target=reviewer_number.dest,
            detail={"note": reviewer_number.note},
        )
        local_caches_changed()
