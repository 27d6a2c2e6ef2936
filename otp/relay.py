"""Relayed SMS (API.md section 14): a text the client wrote, code and all, sent through the same outbox,
routes, failover, receipts, limits and units as an OTP SMS.

The service never learns the code a relayed SMS carries, so it keeps no session for it: the SMS row has
no session and a deadline of its own (`send_before`), its text is encrypted and wiped when delivery ends
like any other, and it feeds no conversion rule (it cannot be approved). The doors that relay (the
`relay` app's API, hooks) are thin adapters over `sms_relay()` and `relayed_sms_get()`.
"""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fraud.services import fraud_relay_check
from otp.crypto import encrypt_inbox_text, encrypt_text
from otp.destinations import DestinationRefused, destination_check
from otp.errors import RelayDisabled, RelayedSmsNotFound
from otp.limits import dest_lock, send_limits_check
from otp.models import SmsMessage
from otp.services import sms_outbox_add
from senders.models import SenderName
from senders.selectors import sender_name_get_approved
from workspaces.models import Workspace
from zeckta import sms_text
from zeckta.db import advisory_xact_lock, uuid7
from zeckta.errors import ValidationFailed

logger = logging.getLogger(__name__)

# 4 concatenated segments of GSM-7 (4 x 153): past that, handsets and providers differ in what arrives.
RELAY_TEXT_MAX_CHARS = 612


def relay_check_enabled(*, workspace: Workspace) -> None:
    """Raises RelayDisabled (403) unless staff enabled the relay for the workspace."""
    if not workspace.relay_enabled:
        raise RelayDisabled()


def sms_relay(
    *,
    workspace: Workspace,
    dest: str,
    src: str | SenderName,
    text: str,
    purpose: str | None = None,
    test: bool = False,
) -> SmsMessage:
    """Queues `text` to `dest` from the sender name `src` (its name, or the approved SenderName itself)
    and returns the outbox row, `queued` (a test SMS: `delivered` to the test inbox).

    Every send limit of an OTP SMS applies and counts it (destination window, country ceiling, daily cap,
    prepaid units), among the SMS of its mode: a relayed SMS and an OTP SMS to one number share the
    number's window. The door decides who may relay: the API's takes any text, and so checks
    `relay_check_enabled` first; the Supabase hook sends the workspace's own LOGIN text only, and does
    not. Raises ValidationFailed (dest, src), DestinationBlocked (the fraud guard), DestinationRateLimited,
    WorkspaceQuotaExceeded or InsufficientBalance; nothing is written then. The text is never logged.
    """
    try:
        country = destination_check(workspace=workspace, dest=dest)
    except DestinationRefused as exc:
        raise ValidationFailed.for_field("dest", str(exc)) from None
    sender_name = src if isinstance(src, SenderName) else sender_name_get_approved(workspace=workspace, name=src)
    if sender_name is None:
        raise ValidationFailed.for_field("src", "Not an approved sender name of this workspace.")
    if not test:
        # Every fraud-guard block applies; a relayed SMS counts in no rule (fraud_relay_check says why).
        fraud_relay_check(workspace=workspace, dest=dest, country=country)
    segments = sms_text.count_segments(text)
    # A test SMS is read back in the test inbox, never sent: encrypted with the inbox's key.
    encrypted = encrypt_inbox_text(text) if test else encrypt_text(text)
    now = timezone.now()
    message = SmsMessage(
        public_id=uuid7(now),
        session=None,
        send_before=now + timedelta(seconds=settings.RELAY_SMS_VALIDITY_SECONDS),
        purpose=purpose or "",
        workspace=workspace,
        to=dest,
        country=country,
        src=sender_name.name,
        encrypted_text=encrypted,
        encoding=segments.encoding,
        segments=segments.segments,
        units=segments.segments,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        is_test=test,
    )
    with transaction.atomic():
        # The lock an OTP request to the number takes: the two kinds of SMS count against one window.
        advisory_xact_lock(dest_lock(workspace, dest))
        # The send limits of an OTP SMS, at the same step of the same path (and the place for any further
        # check an OTP request makes before it writes its SMS).
        send_limits_check(workspace=workspace, dest=dest, country=country, now=now, test=test)
        assert message.send_before is not None
        sms_outbox_add(message, workspace=workspace, expires_at=message.send_before, now=now)
    logger.info("relayed SMS %s queued (%s segments)", message.public_id, message.segments)
    return message


def relayed_sms_get(*, workspace: Workspace, message_id: uuid.UUID, test: bool = False) -> SmsMessage:
    """The workspace's relayed SMS of the caller's mode; RelayedSmsNotFound (404) for any other, an OTP
    SMS's id included."""
    message = SmsMessage.objects.filter(
        workspace=workspace, public_id=message_id, is_test=test, session__isnull=True
    ).first()
    if message is None:
        raise RelayedSmsNotFound()
    return message
