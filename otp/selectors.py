import uuid

from django.db import connection

from otp.errors import OtpSessionNotFound
from otp.models import OtpSession, SmsMessage
from workspaces.models import Workspace
from zeckta.db import columns_of, db_value, instance_from_row

# By hand: one statement, compiled once. The session's latest SMS (the one whose code works) is the one
# with the highest id; the subquery reads it from the session_id index.
_SESSION_WITH_SMS = (
    f"SELECT {columns_of(OtpSession, 's')}, {columns_of(SmsMessage, 'm')}"
    f" FROM {OtpSession._meta.db_table} s LEFT JOIN {SmsMessage._meta.db_table} m"
    f" ON m.id = (SELECT max(id) FROM {SmsMessage._meta.db_table} WHERE session_id = s.id)"
    " WHERE s.workspace_id = %s AND s.public_id = %s"
)


def otp_session_get(*, workspace: Workspace, session_id: uuid.UUID) -> OtpSession:
    """The workspace's session with its latest SMS; another workspace's session is simply not found."""
    with connection.cursor() as cursor:
        cursor.execute(_SESSION_WITH_SMS, [workspace.pk, db_value(OtpSession, "public_id", session_id)])
        row = cursor.fetchone()
    if row is None:
        raise OtpSessionNotFound()
    split = len(OtpSession._meta.concrete_fields)
    session = instance_from_row(OtpSession, row[:split])
    session.latest_sms = instance_from_row(SmsMessage, row[split:]) if row[split] is not None else None
    return session
