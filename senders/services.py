import re
import uuid

import phonenumbers
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from rest_framework import status

from senders.models import SenderName
from senders.selectors import SenderNameNotFound, sender_name_get
from workspaces.models import Workspace
from zeckta.api.errors import ApplicationError

_ALPHANUMERIC_RE = re.compile(r"[A-Za-z0-9 .\-]{3,11}")
_SHORTCODE_RE = re.compile(r"[0-9]{3,8}")


class SenderError(Exception):
    """An invalid sender or transition; one line, fit for a terminal or an `errors` entry."""


class SenderNameExists(ApplicationError, SenderError):
    """Also a SenderError, so operator commands that catch SenderError print it as one line."""

    status_code = status.HTTP_409_CONFLICT
    code = "SENDER_NAME_EXISTS"
    default_message = "This workspace already has this sender name."

    def __init__(self, sender: str) -> None:
        message = f"This workspace already has the sender name {sender!r}."
        super().__init__(message, errors={"sender": [message]})


class SenderNameNotEditable(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "SENDER_NAME_NOT_EDITABLE"
    default_message = "Only a PENDING or REJECTED sender name can be changed."


class SenderNameInUse(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "SENDER_NAME_IN_USE"
    default_message = "This sender name was used for OTP requests that are still kept, so it cannot be deleted yet."


# An APPROVED sender is what OTP requests send from: changing it would need a new approval first.
EDITABLE_STATUSES = (SenderName.Status.PENDING, SenderName.Status.REJECTED)


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
        raise SenderNameExists(sender) from None


def sender_update(
    *,
    workspace: Workspace,
    sender_name_id: uuid.UUID,
    sender: str,
    sender_type: str,
    purpose: str,
    country_code: str = "",
) -> SenderName:
    """Replaces a PENDING or REJECTED request and submits it again: PENDING, no reason, a new submittedAt."""
    problem = sender_validation_error(sender, sender_type)
    if problem:
        raise SenderError(problem)
    now = timezone.now()
    try:
        # One conditional UPDATE: a sender staff approve meanwhile is never changed behind their back.
        with transaction.atomic():
            updated = SenderName.objects.filter(
                workspace=workspace, public_id=sender_name_id, status__in=EDITABLE_STATUSES
            ).update(
                sender=sender,
                sender_type=sender_type,
                purpose=purpose,
                country_code=country_code.upper(),
                status=SenderName.Status.PENDING,
                status_reason="",
                approved_at=None,
                submitted_at=now,
                updated_at=now,
            )
    except IntegrityError:
        raise SenderNameExists(sender) from None
    sender_name = sender_name_get(workspace=workspace, sender_name_id=sender_name_id)  # 404 if not ours
    if not updated:
        raise SenderNameNotEditable()
    return sender_name


def sender_delete(*, workspace: Workspace, sender_name_id: uuid.UUID) -> None:
    """Deletes the workspace's sender name, whatever its status, unless OTP sessions still refer to it.

    Sessions keep their sender (on_delete=PROTECT) until the purge removes them; the sender can go after that.
    """
    try:
        with transaction.atomic():
            # The row lock orders this against a concurrent update; the PROTECT check runs under it.
            rows = SenderName.objects.select_for_update().filter(workspace=workspace, public_id=sender_name_id)
            sender_name = rows.first()
            if sender_name is None:
                raise SenderNameNotFound()
            sender_name.delete()
    except (ProtectedError, IntegrityError):
        # IntegrityError: an OTP session inserted concurrently made the (deferred) foreign key check fail.
        raise SenderNameInUse() from None


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
