"""The retention purge on plain tables, on PostgreSQL: what a deployment with OTP_PARTITION_BY_DAY off has.

The suite's database keeps the per-send tables by day (zeckta.settings_test), where the purge drops whole
partitions (test_partitions). A plain deployment's purge deletes rows instead, through Django's collector,
which cascades a session to its SMS, their attempts and its test inbox row in Python (the keys into these
tables have no database constraint, otp 0021). Here each partitioned table is put aside and a plain table of
the same columns, defaults and checks takes its name, inside the test's own transaction: PostgreSQL's DDL
rolls back with it. `otp.partitions.partitioned()` then reads the catalogue as it would on such a
deployment, and the purge takes its row-delete branch against real PostgreSQL tables.
"""

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.utils import timezone

from otp import expiry
from otp.expiry import otp_sessions_purge
from otp.models import OtpSession, SmsAttempt, SmsMessage, TestInboxMessage, WrongCode
from otp.partitions import TABLES, partitioned
from otp.tests.factories import OtpSessionFactory, SmsMessageFactory

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the plain tables of a PostgreSQL deployment"),
]


@pytest.fixture
def plain_tables():
    """The per-send tables as plain ones for this test (its transaction rolls the swap back)."""
    with connection.cursor() as cursor:
        for spec in TABLES:
            cursor.execute(f"ALTER TABLE {spec.table} RENAME TO {spec.table}_by_day")
            # Not INCLUDING INDEXES: a partitioned table's unique indexes carry its partition key.
            cursor.execute(
                f"CREATE TABLE {spec.table} (LIKE {spec.table}_by_day"
                " INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS, PRIMARY KEY (id))"
            )
    assert not partitioned()


def _session_with_sends(*, at, test: bool = False) -> OtpSession:
    """A session made at `at` with its SMS, the SMS's provider attempt and, for a test session, its inbox row."""
    session = OtpSessionFactory(created_at=at, is_test=test)
    sms = SmsMessageFactory(session=session, created_at=at)
    SmsAttempt.objects.create(message=sms, route_key="default", route_name="default", status="accepted", started_at=at)
    if test:
        TestInboxMessage.objects.create(
            workspace=session.workspace,
            session=session,
            dest=session.dest,
            src=session.src,
            encrypted_text=b"\x00",
            created_at=at,
        )
    return session


@pytest.mark.parametrize("batch", [1, expiry.PURGE_BATCH_ROWS])
def test_the_purge_of_plain_tables_deletes_exactly_what_is_past_retention(plain_tables, batch, monkeypatch):
    monkeypatch.setattr(expiry, "PURGE_BATCH_ROWS", batch)  # 1: every session and relayed SMS a batch of its own
    now = timezone.now()
    cutoff = now - timedelta(days=settings.OTP_SESSION_RETENTION_DAYS)
    wrong_codes_cutoff = now - timedelta(seconds=settings.OTP_WRONG_CODE_WINDOW_SECONDS)
    # Row by row, not by day: a second either side of the cutoff decides.
    old = [_session_with_sends(at=cutoff - timedelta(seconds=1)), _session_with_sends(at=cutoff - timedelta(days=9))]
    old_test = _session_with_sends(at=cutoff - timedelta(days=2), test=True)
    kept = [_session_with_sends(at=cutoff + timedelta(seconds=1)), _session_with_sends(at=now)]
    kept_test = _session_with_sends(at=cutoff + timedelta(days=1), test=True)
    # Relayed SMS have no session: their own creation time counts.
    workspace = kept[0].workspace
    relayed_old, relayed_kept = (
        SmsMessageFactory(
            session=None,
            send_before=at + timedelta(minutes=5),
            workspace=workspace,
            to="+233200000001",
            country="GH",
            src="X",
            is_test=False,
            created_at=at,
        )
        for at in (cutoff - timedelta(seconds=1), cutoff + timedelta(seconds=1))
    )
    # Wrong codes go with the guess budget's window, not with their session.
    wrong_old = WrongCode.objects.create(
        workspace=workspace, dest="+233200000003", created_at=wrong_codes_cutoff - timedelta(seconds=1)
    )
    wrong_kept = WrongCode.objects.create(
        workspace=workspace, dest="+233200000003", created_at=wrong_codes_cutoff + timedelta(seconds=1)
    )

    kept_sessions = [*kept, kept_test]
    kept_sms = {relayed_kept.pk, *SmsMessage.objects.filter(session__in=kept_sessions).values_list("pk", flat=True)}
    assert len(kept_sms) == len(kept_sessions) + 1

    with time_machine.travel(now, tick=False):
        assert otp_sessions_purge() == len(old) + 1  # the sessions it deleted, not the rows cascaded with them

    assert set(OtpSession.objects.values_list("pk", flat=True)) == {session.pk for session in kept_sessions}
    assert set(SmsMessage.objects.values_list("pk", flat=True)) == kept_sms
    assert set(SmsAttempt.objects.values_list("message", flat=True)) == kept_sms - {relayed_kept.pk}
    assert list(TestInboxMessage.objects.values_list("session", flat=True)) == [kept_test.pk]
    assert list(WrongCode.objects.values_list("pk", flat=True)) == [wrong_kept.pk]
    assert not WrongCode.objects.filter(pk=wrong_old.pk).exists()
    assert not OtpSession.objects.filter(pk__in=[old_test.pk, *(session.pk for session in old)]).exists()
