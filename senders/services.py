import re
import uuid

import phonenumbers
from django.db import IntegrityError, transaction
from django.utils import timezone

from senders.models import SenderName
from workspaces.models import Workspace

_ALPHANUMERIC_RE = re.compile(r"[A-Za-z0-9 .\-]{3,11}")
_SHORTCODE_RE = re.compile(r"[0-9]{3,8}")


class SenderError(Exception):
    """An invalid sender or transition; one line, fit for a terminal or an `errors` entry."""


def sender_validation_error(sender: str, sender_type: str) -> str | None:
    """Why `sender` is not a valid sender of `sender_type`, or None when it is."""
    if sender_type == SenderName.Type.ALPHANUMERIC:
        if not _ALPHANUMERIC_RE.fullmatch(sender) or not re.search(r"[A-Za-z]", sender):
            return "An alphanumeric sender has 3 to 11 of A-Z a-z 0-9 space . - with at least one letter."
    elif sender_type == SenderName.Type.MSISDN:
        if not _is_e164(sender):
            return "An msisdn sender is a valid phone number in E.164 form (+233202007745)."
    elif sender_type == SenderName.Type.SHORTCODE:
        if not _SHORTCODE_RE.fullmatch(sender):
            return "A shortcode sender has 3 to 8 digits."
    else:
        return f"Unknown sender type {sender_type!r}: use alphanumeric, msisdn or shortcode."
    return None


def _is_e164(value: str) -> bool:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_valid_number(number) and phonenumbers.format_number(
        number, phonenumbers.PhoneNumberFormat.E164
    ) == value


def sender_create(
    *,
    workspace: Workspace,
    sender: str,
    sender_type: str = SenderName.Type.ALPHANUMERIC,
    purpose: str = "",
    country_code: str = "",
    approve: bool = False,
) -> SenderName:
    problem = sender_validation_error(sender, sender_type)
    if problem:
        raise SenderError(problem)
    now = timezone.now()
    try:
        with transaction.atomic():
            return SenderName.objects.create(
                workspace=workspace,
                sender=sender,
                sender_type=sender_type,
                purpose=purpose,
                country_code=country_code.upper(),
                status=SenderName.Status.APPROVED if approve else SenderName.Status.PENDING,
                approved_at=now if approve else None,
            )
    except IntegrityError:
        raise SenderError(f"workspace {workspace.slug!r} already has the sender {sender!r}") from None


def sender_get(*, public_id: str) -> SenderName:
    try:
        return SenderName.objects.select_related("workspace").get(public_id=uuid.UUID(str(public_id)))
    except (ValueError, SenderName.DoesNotExist):
        raise SenderError(f"no sender name with id {public_id!r}") from None


def sender_approve(*, sender_name: SenderName) -> SenderName:
    now = timezone.now()
    SenderName.objects.filter(pk=sender_name.pk).update(
        status=SenderName.Status.APPROVED, status_reason="", approved_at=now, updated_at=now
    )
    sender_name.refresh_from_db()
    return sender_name


def sender_reject(*, sender_name: SenderName, reason: str) -> SenderName:
    reason = reason.strip()
    if not reason:
        raise SenderError("a rejection needs a reason")
    now = timezone.now()
    SenderName.objects.filter(pk=sender_name.pk).update(
        status=SenderName.Status.REJECTED, status_reason=reason[:500], approved_at=None, updated_at=now
    )
    sender_name.refresh_from_db()
    return sender_name
