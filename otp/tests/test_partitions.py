"""The per-send tables by day on PostgreSQL (otp.partitions, migration otp 0021).

What must hold: partitions exist ahead of the days they hold; a session lives across midnight (its row stays
in the day it was made, its verify and its reuse find it the next day); the purge drops whole days while
requests go on, and loses no live session; each hot statement reads the one or two partitions a live
session can be in, not every one (counted from PostgreSQL's own per-transaction scan statistics, inside the
database functions as they run).
"""

import re
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from otp.day_functions import day_functions_sync
from otp.delivery import _claim, _claim_due, _settle_sent, sms_deliver
from otp.expiry import otp_sessions_purge
from otp.models import OtpSession, SmsAttempt, SmsMessage, WrongCode
from otp.partitions import SESSIONS, TABLES, partition_name, partitioned, partitions_ensure, partitions_of
from otp.selectors import otp_session_get
from otp.tasks import otp_partitions_ensure_task
from otp.tests.factories import OtpSessionFactory, SmsMessageFactory
from otp.tests.helpers import deliver_and_read_code, request_otp, session_url, verify, wrong_code
from workspaces.tests.factories import issue_key
from zeckta.testing import DEST, api_client, run_together

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")

TABLE_NAMES = [spec.table for spec in TABLES]


def _day(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y%m%d}"


def _restore_partitions() -> None:
    """Every partition the test database started with (a test that dropped some puts them back)."""
    partitions_ensure(
        now=timezone.now(),
        ahead_days=settings.OTP_PARTITIONS_AHEAD_DAYS,
        back_days=settings.OTP_SESSION_RETENTION_DAYS + 1,
    )
    day_functions_sync()


def _scans() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables"
            " WHERE relname ~ '^otp_(otpsession|smsmessage|smsattempt|wrongcode)_p[0-9]{8}$'"
        )
        return dict(cursor.fetchall())


@contextmanager
def partitions_read():
    """The partitions each table's statements read in the block: {table: {partition, ...}}, from
    pg_stat_xact_user_tables (this transaction's scans, inside the database functions too)."""
    read: dict[str, set[str]] = {}
    before = _scans()
    yield read
    for name, count in _scans().items():
        if count > before.get(name, 0):
            read.setdefault(name.rsplit("_p", 1)[0], set()).add(name)


@pytest.mark.django_db
def test_the_test_database_is_partitioned_by_day():
    assert partitioned()
    for table in TABLE_NAMES:
        names = [name for name, _, _ in partitions_of(table)]
        today = timezone.now().date()
        assert partition_name(table, today) in names
        assert partition_name(table, today + timedelta(days=settings.OTP_PARTITIONS_AHEAD_DAYS)) in names
    with connection.cursor() as cursor:
        # The primary keys carry the creation time; the one pending session per destination is each day's.
        cursor.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'otp_otpsession_pkey'")
        assert cursor.fetchone()[0] == "PRIMARY KEY (id, created_at)"
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", [f"{partition_name('otp_otpsession', today)}_u0"]
        )
        assert "UNIQUE" in cursor.fetchone()[0]


@pytest.mark.django_db
def test_beat_creates_the_partitions_ahead_once():
    assert "create-partitions" in settings.CELERY_BEAT_SCHEDULE
    later = timezone.now() + timedelta(days=20)
    with time_machine.travel(later, tick=False):
        created = otp_partitions_ensure_task.apply().get()
        # That day and the week after it (the days in between are not needed: beat runs every hour).
        assert created == len(TABLES) * (settings.OTP_PARTITIONS_AHEAD_DAYS + 1)
        assert otp_partitions_ensure_task.apply().get() == 0  # nothing missing any more
    last = later.date() + timedelta(days=settings.OTP_PARTITIONS_AHEAD_DAYS)
    for table in TABLE_NAMES:
        assert partitions_of(table)[-1][0] == partition_name(table, last)
    # Rows of that far day now have somewhere to go.
    session = OtpSessionFactory(created_at=later, expires_at=later + timedelta(minutes=5))
    assert OtpSession.objects.get(pk=session.pk, created_at=later).dest == session.dest


@pytest.mark.django_db(transaction=True)
def test_two_processes_making_the_same_partitions_at_once_make_each_once_with_its_indexes():
    """Beat's hourly run and a deploy's migrate, or the tests' flush and a worker's beat, at once: the one that
    loses the race to a partition takes it as made (it raised DuplicateTable before), and no partition is ever
    found without its local unique index."""
    later = timezone.now() + timedelta(days=60)
    days = [later.date() + timedelta(days=offset) for offset in range(4)]
    try:
        for _ in range(3):  # the race is lost at a different partition each time, or not at all
            created = run_together(2, lambda _: partitions_ensure(now=later, ahead_days=3))
            assert sum(created) == len(TABLES) * len(days)
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE %s", [f"{SESSIONS.table}_p%_u0"])
                indexes = cursor.fetchone()[0]
            assert indexes == len(partitions_of(SESSIONS.table))
            _drop(days)
    finally:
        _drop(days)


def _drop(days) -> None:
    with connection.cursor() as cursor:
        for spec in TABLES:
            for day in days:
                cursor.execute(f"DROP TABLE IF EXISTS {partition_name(spec.table, day)}")


@pytest.mark.django_db
def test_a_session_made_at_235959_is_verified_and_reused_after_midnight(api):
    midnight = datetime.combine(timezone.now().date() + timedelta(days=1), time(), tzinfo=UTC)
    with time_machine.travel(midnight - timedelta(seconds=1), tick=False):
        session_id = request_otp(api, DEST).json()["data"]["sessionId"]
        code = deliver_and_read_code(session_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM otp_otpsession WHERE public_id = %s", [session_id])
        assert cursor.fetchone()[0] == partition_name("otp_otpsession", midnight.date() - timedelta(days=1))
    with time_machine.travel(midnight + timedelta(seconds=1), tick=False):
        # The next day: the same pending session is reused, its state read, a wrong code counted, then it works.
        again = request_otp(api, DEST).json()["data"]
        assert (again["sessionId"], again["reused"]) == (session_id, True)
        assert api.get(session_url(session_id)).json()["data"]["status"] == "PENDING"
        assert verify(api, session_id, wrong_code(code)).status_code == 400
        response = verify(api, session_id, code)
        assert response.status_code == 200, response.json()
        assert response.json()["data"]["status"] == "APPROVED"
    assert WrongCode.objects.get().created_at == midnight + timedelta(seconds=1)  # in the new day's partition


@pytest.mark.django_db
@pytest.mark.parametrize("otp_path", ["sql"], indirect=True)
def test_the_hot_paths_read_one_or_two_partitions(workspace, sender, otp_path, settings):
    workspace.fraud_guard_mode = "off"
    workspace.save()
    api = api_client(issue_key(workspace, name="many", tps=10_000)[1])
    # Rows in older days, which a statement without the creation time would have to look through.
    for days in (3, 10, 25):
        old = timezone.now() - timedelta(days=days)
        SmsMessageFactory(session=OtpSessionFactory(created_at=old, expires_at=old + timedelta(minutes=5), dest=DEST))
    request_otp(api, "+233244000001")  # warm: caches, the key's last use
    for number in range(7):  # past PL/pgSQL's first five custom plans: the generic plan prunes at run time
        dest = f"+23324455{number:04d}"
        with partitions_read() as new:
            session_id = request_otp(api, dest).json()["data"]["sessionId"]
        message = SmsMessage.objects.filter(session__public_id=session_id).latest("id")
        with partitions_read() as reused:
            assert request_otp(api, dest).json()["data"]["reused"] is True
        with partitions_read() as claim:
            sms_deliver(message_id=message.pk)
        with partitions_read() as wrong:
            assert verify(api, session_id, "000000").status_code in (400, 200)
        with partitions_read() as read:
            assert api.get(session_url(session_id)).status_code == 200
    for reads in (new, reused, claim, wrong, read):
        assert reads, "no partition read at all: the counting is broken"
        for table, names in reads.items():
            assert 1 <= len(names) <= 2, (table, names)


def _partitions_locked() -> dict[str, set[str]]:
    """The daily partitions (tables, not their indexes) this transaction holds a lock on, by table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relation::regclass::text FROM pg_locks WHERE pid = pg_backend_pid() AND relation IS NOT NULL"
        )
        names = [name for (name,) in cursor.fetchall()]
    locked: dict[str, set[str]] = {}
    for name in names:
        if re.fullmatch(r"otp_(otpsession|smsmessage|smsattempt|wrongcode)_p[0-9]{8}", name):
            locked.setdefault(name.rsplit("_p", 1)[0], set()).add(name)
    return locked


@pytest.mark.django_db(transaction=True)
def test_the_session_read_plans_and_locks_one_or_two_days(api, workspace):
    # Rows in older days, which a plan without bounds known when planning would cover (and lock) too.
    for days in (3, 10):
        old = timezone.now() - timedelta(days=days)
        SmsMessageFactory(session=OtpSessionFactory(created_at=old, expires_at=old + timedelta(minutes=5), dest=DEST))
    session_id = request_otp(api, DEST).json()["data"]["sessionId"]
    with transaction.atomic():
        session = otp_session_get(workspace=workspace, session_id=uuid.UUID(session_id))
        locked = _partitions_locked()
    assert session.latest_sms is not None
    assert set(locked) == {"otp_otpsession", "otp_smsmessage"}
    for table, names in locked.items():
        assert 1 <= len(names) <= 2, (table, names)


@pytest.mark.django_db(transaction=True)
def test_the_claims_and_the_settle_plan_and_lock_one_or_two_days(api):
    for days in (3, 10):
        old = timezone.now() - timedelta(days=days)
        SmsMessageFactory(session=OtpSessionFactory(created_at=old, expires_at=old + timedelta(minutes=5), dest=DEST))
    for number in range(2):
        request_otp(api, f"+23324455{number:04d}")
    now = timezone.now()
    with transaction.atomic():
        claimed, _unclaimed = _claim_due(10)
        batch = _partitions_locked()
    assert len(claimed) == 2
    SmsMessage.objects.filter(pk=claimed[0].pk).update(status="queued", claimed_at=None)  # to claim it alone
    with transaction.atomic():
        message = _claim(claimed[0].pk, now=now, stale_claim=now - timedelta(minutes=5))
        one = _partitions_locked()
    assert message is not None
    attempt = SmsAttempt(message=message, route_key="default", route_name="default", status="accepted", started_at=now)
    with transaction.atomic():
        assert _settle_sent(message, attempt, claimed_at=message.claimed_at)
        settled = _partitions_locked()
    for locked in (batch, one, settled):
        assert "otp_smsmessage" in locked
        for table, names in locked.items():
            assert 1 <= len(names) <= 2, (table, names)


@pytest.mark.django_db(transaction=True)
def test_the_purge_drops_old_days_while_requests_go_on(workspace, sender):
    workspace.fraud_guard_mode, workspace.daily_sms_cap = "off", 0
    workspace.save()
    raw_key = issue_key(workspace, name="load", tps=10_000)[1]
    now = timezone.now()
    old = now - timedelta(days=settings.OTP_SESSION_RETENTION_DAYS + 1)
    try:
        for _ in range(3):
            sms = SmsMessageFactory(session=OtpSessionFactory(created_at=old, expires_at=old + timedelta(minutes=5)))
            SmsAttempt.objects.create(
                message=sms, route_key="default", route_name="default", status="accepted", started_at=old
            )
        WrongCode.objects.create(workspace=sms.workspace, dest=sms.to, created_at=old)

        errors: list[BaseException] = []
        made: list[str] = []
        stop = threading.Event()

        def requests(index: int) -> None:
            client = api_client(raw_key)
            try:
                number = 0
                while not stop.is_set():
                    number += 1
                    response = request_otp(client, f"+2332440{index:02d}{number:03d}")
                    assert response.status_code == 200, response.json()
                    made.append(response.json()["data"]["sessionId"])
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=requests, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        try:
            while len(made) < 20 and not errors:
                threading.Event().wait(0.02)
            dropped = otp_sessions_purge()
            while len(made) < 40 and not errors:
                threading.Event().wait(0.02)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert errors == []
        assert dropped >= 1
        old_day = _day(old)
        for table in TABLE_NAMES:
            assert not [name for name, _, _ in partitions_of(table) if name.endswith(old_day)]
        assert not OtpSession.objects.filter(created_at__lt=now - timedelta(days=1)).exists()
        assert not SmsAttempt.objects.filter(started_at=old).exists()
        # Every session a request made is there, with its SMS.
        assert OtpSession.objects.filter(public_id__in=made).count() == len(made)
        assert SmsMessage.objects.filter(session__public_id__in=made).count() == len(made)
    finally:
        _restore_partitions()
