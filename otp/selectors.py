import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.fernet import InvalidToken
from django.conf import settings
from django.db import connection
from django.db.models import Count, Min

from otp.crypto import decrypt_inbox_text, decrypt_reviewer_code
from otp.errors import OtpSessionNotFound
from otp.models import OtpSession, ReviewerNumber, SmsMessage, TestInboxMessage, WorkspaceText
from otp.partitions import MAX_VALIDITY, created_near
from otp.templating import WorkspaceTexts
from workspaces.models import Workspace
from zeckta.db import columns_of, db_value, instance_from_row
from zeckta.localcache import LocalCache
from zeckta.metrics import OutboxState

logger = logging.getLogger(__name__)

# By hand: one statement, compiled once. The session's latest SMS (the one whose code works) is the one
# with the highest id, read through the session_id index: LATERAL ... LIMIT 1 on PostgreSQL (a join on
# `m.id = (SELECT max(id) ...)` let its planner hash the whole SMS table), the max() form on SQLite, which
# has no LATERAL. A test key's sessions and a live key's never see each other (API.md section 10): the
# mode is part of the lookup.
_SESSIONS, _SMS = OtpSession._meta.db_table, SmsMessage._meta.db_table
_SESSION_COLUMNS = f"SELECT {columns_of(OtpSession, 's')}, {columns_of(SmsMessage, 'm')} FROM {_SESSIONS} s"
# The creation time bounds: the day(s) the session id's UUIDv7 time falls in (otp.partitions.created_near),
# and, for its SMS, the day after the session's creation (sent within its validity). The SMS side is bounded
# twice: by values of the statement (the id's time, to a day after), which PostgreSQL prunes the partitions
# with while planning, so the plan and its locks cover one or two days of SMS, not all of them; and by the
# session's own creation time, which only the execution knows.
_SESSION_WHERE = (
    " WHERE s.workspace_id = %s AND s.public_id = %s AND s.is_test = %s AND s.created_at >= %s AND s.created_at < %s"
)
_SESSION_WITH_SMS = {
    "postgresql": f"{_SESSION_COLUMNS} LEFT JOIN LATERAL"
    f" (SELECT * FROM {_SMS} WHERE session_id = s.id AND created_at >= %s AND created_at <= %s"
    f" AND created_at >= s.created_at AND created_at <= s.created_at + interval '86400 seconds'"
    f" ORDER BY id DESC LIMIT 1) m ON true{_SESSION_WHERE}",
    "sqlite": f"{_SESSION_COLUMNS} LEFT JOIN {_SMS} m"
    f" ON m.id = (SELECT max(id) FROM {_SMS} WHERE session_id = s.id){_SESSION_WHERE}",
}


_EARLIEST, _LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)


def otp_session_get(*, workspace: Workspace, session_id: uuid.UUID, test: bool = False) -> OtpSession:
    """The workspace's session with its latest SMS; another workspace's session, or one of the other mode
    (test or live), is simply not found."""
    with connection.cursor() as cursor:
        near = created_near(session_id)
        since, until = near.get("created_at__gte", _EARLIEST), near.get("created_at__lt", _LATEST)
        params = [workspace.pk, db_value(OtpSession, "public_id", session_id), test]
        params += [db_value(OtpSession, "created_at", since), db_value(OtpSession, "created_at", until)]
        if connection.vendor == "postgresql":
            sms_until = until + MAX_VALIDITY if until < _LATEST - MAX_VALIDITY else until
            params = [db_value(SmsMessage, "created_at", since), db_value(SmsMessage, "created_at", sms_until), *params]
        cursor.execute(_SESSION_WITH_SMS[connection.vendor], params)
        row = cursor.fetchone()
    if row is None:
        raise OtpSessionNotFound()
    split = len(OtpSession._meta.concrete_fields)
    session = instance_from_row(OtpSession, row[:split])
    session.latest_sms = instance_from_row(SmsMessage, row[split:]) if row[split] is not None else None
    return session


# --- Test mode ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxMessage:
    session_id: uuid.UUID | None  # None for a relayed SMS (otp.relay)
    dest: str
    src: str
    text: str  # with its code: only ever shown to the workspace's test keys
    created_at: datetime


def inbox_list(*, workspace: Workspace, dest: str, now: datetime) -> list[InboxMessage]:
    """The workspace's test SMS to `dest` from the last TEST_INBOX_RETENTION_SECONDS, newest first (older
    rows may wait for the purge: they are never shown)."""
    since = now - timedelta(seconds=settings.TEST_INBOX_RETENTION_SECONDS)
    rows = (
        TestInboxMessage.objects.filter(workspace=workspace, dest=dest, created_at__gt=since)
        .order_by("-created_at", "-id")
        .values_list("session__public_id", "dest", "src", "encrypted_text", "created_at")
    )
    messages = []
    for session_id, number, src, token, created_at in rows:
        try:
            text = decrypt_inbox_text(token)
        except InvalidToken:
            continue  # written before SECRET_KEY or OTP_HASH_KEY changed: unreadable now, purged within 24 h
        messages.append(InboxMessage(session_id, number, src, text, created_at))
    return messages


# dest -> encrypted fixed code, of a workspace's enabled reviewer numbers: an empty dict for nearly every
# workspace, so a request pays no query for the feature (once per LOCAL_CACHE_SECONDS per process).
_reviewer_numbers: LocalCache[dict[str, bytes]] = LocalCache("reviewer numbers")


def reviewer_code_get(*, workspace: Workspace, dest: str) -> str | None:
    """The fixed code of `dest` when it is one of the workspace's enabled reviewer numbers, else None.

    A code that no longer decrypts (SECRET_KEY or OTP_HASH_KEY changed since it was saved) is logged and
    the number treated as an ordinary one, until staff enter the code again."""
    numbers = _reviewer_numbers.get(
        workspace.pk,
        lambda: {
            number: bytes(token)
            for number, token in ReviewerNumber.objects.filter(workspace=workspace, enabled=True).values_list(
                "dest", "encrypted_code"
            )
        },
    )
    token = numbers.get(dest)
    if token is None:
        return None
    try:
        return decrypt_reviewer_code(token)
    except InvalidToken:
        logger.error(
            "a reviewer number of workspace %s no longer decrypts (keys changed?): enter it again in the admin",
            workspace.slug,
        )
        return None


# (purpose, locale) -> text, of a workspace's own texts (API.md section 15): like the reviewer numbers, an
# empty dict for most workspaces, read once per LOCAL_CACHE_SECONDS per process, so a request pays no query.
_workspace_texts: LocalCache[dict[tuple[str, str], str]] = LocalCache("workspace texts")


def workspace_texts_get(*, workspace: Workspace) -> WorkspaceTexts:
    """The workspace's own texts by (purpose, locale), for otp.templating.text_choose. A change in the
    admin reaches this process at once (otp.apps: forget_on_save) and the others within the cache's time."""
    return _workspace_texts.get(
        workspace.pk,
        lambda: {
            (purpose, locale): text
            for purpose, locale, text in WorkspaceText.objects.filter(workspace=workspace).values_list(
                "purpose", "locale", "text"
            )
        },
    )


def outbox_state() -> OutboxState:
    """The SMS not yet handed to a provider, for /metrics: one query on the partial index of pending rows
    (otp_sms_pending_idx), whatever the size of the table."""
    row = SmsMessage.objects.filter(status__in=SmsMessage.IN_OUTBOX).aggregate(
        pending=Count("pk"), oldest=Min("created_at")
    )
    return OutboxState(pending=row["pending"], oldest_created_at=row["oldest"])
