"""Shared fixtures: a workspace with an approved sender and a live API key, and an authenticated client."""

import pytest
import redis
from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import OperationalError
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations

from senders.gateways import locmem
from senders.routes import routes_changed
from senders.tests.factories import SenderNameFactory
from webhooks.tests.receiver import Receiver
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.localcache import local_caches_clear
from zeckta.testing import api_client

FLUSH_ATTEMPTS = 5
_flush_handle = flush.Command.handle


def _flush_retrying_deadlocks(self, **options):
    """A transactional test's flush, tried again when PostgreSQL aborted it for a deadlock.

    Process tests (otp/tests/test_scale_out.py) keep their workers, and their beat, running across tests:
    a periodic task (the traffic rollup, the fraud rules, the expiry sweep) may hold one table's lock while
    the flush's TRUNCATE, which locks its tables in an order of its own, holds another. PostgreSQL then
    aborts one of the two; the task's work is redone by its next run, and the flush is tried again here.
    """
    for attempt in range(FLUSH_ATTEMPTS):
        try:
            return _flush_handle(self, **options)
        except CommandError as exc:
            deadlocked = isinstance(exc.__cause__, OperationalError) and "deadlock detected" in str(exc.__cause__)
            if not deadlocked or attempt == FLUSH_ATTEMPTS - 1:
                raise


flush.Command.handle = _flush_retrying_deadlocks

# The per-send tables are partitioned by day on PostgreSQL (otp.partitions): a TRUNCATE of them renews the
# files of every partition and index (~1,000 relations, seconds each flush), where a DELETE of their few rows
# costs milliseconds. Nothing references them, so they can leave the TRUNCATE; and a process test's beat may
# have purged (dropped) the test database's older days, which later tests write rows into: made again.
_PARTITIONED = ("otp_otpsession", "otp_smsmessage", "otp_smsattempt", "otp_wrongcode")
_sql_flush = PostgresOperations.sql_flush


def _sql_flush_deleting_partitioned(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    from django.conf import settings
    from django.utils import timezone

    from otp.day_functions import day_functions_sync
    from otp.partitions import partitioned, partitions_ensure

    if not partitioned():
        return _sql_flush(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    partitions_ensure(
        now=timezone.now(),
        ahead_days=settings.OTP_PARTITIONS_AHEAD_DAYS,
        back_days=settings.OTP_SESSION_RETENTION_DAYS + 1,
    )
    day_functions_sync()
    kept = [table for table in tables if table not in _PARTITIONED]
    deletes = [f'DELETE FROM "{table}";' for table in tables if table in _PARTITIONED]
    return deletes + _sql_flush(self, style, kept, reset_sequences=reset_sequences, allow_cascade=allow_cascade)


PostgresOperations.sql_flush = _sql_flush_deleting_partitioned


@pytest.fixture(scope="session", autouse=True)
def _daily_partitions(django_db_setup, django_db_blocker):
    """The test database's daily partitions (otp.partitions) around today, whenever it was made (--reuse-db):
    tests write sessions up to a retention period back and travel a few days ahead."""
    from django.conf import settings
    from django.utils import timezone

    from otp.day_functions import day_functions_sync
    from otp.partitions import partitions_ensure

    with django_db_blocker.unblock():
        partitions_ensure(
            now=timezone.now(),
            ahead_days=settings.OTP_PARTITIONS_AHEAD_DAYS,
            back_days=settings.OTP_SESSION_RETENTION_DAYS + 1,
        )
        day_functions_sync()  # as beat makes them with the partitions (otp.expiry.otp_partitions_ensure)


@pytest.fixture(autouse=True)
def _fresh_rate_limits(settings):
    """Rate counters and the fraud guard's counts and blocks live in the real Redis; key and workspace ids
    repeat across test runs, so start each test clean."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for pattern in ("zeckta:rl:*", "zeckta:fraud:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


@pytest.fixture(autouse=True)
def _fresh_route_list():
    """Workers keep the route list a moment; a test's routes are rolled back with it, so forget them."""
    routes_changed()
    yield
    routes_changed()


@pytest.fixture(autouse=True)
def _fresh_local_caches():
    """Cached keys, workspaces and sender names of one test are rolled back with it: forget them."""
    local_caches_clear()
    yield
    local_caches_clear()


@pytest.fixture(autouse=True)
def _empty_sms_outbox():
    locmem.outbox.clear()
    yield
    locmem.outbox.clear()


@pytest.fixture
def sms_outbox():
    return locmem.outbox


@pytest.fixture
def workspace(db):
    return WorkspaceFactory(name="Acme", slug="acme")


@pytest.fixture
def sender(workspace):
    return SenderNameFactory(workspace=workspace, name="ZECKTA")


@pytest.fixture
def issued_key(workspace):
    return issue_key(workspace, name="test")


@pytest.fixture
def raw_key(issued_key):
    return issued_key[1]


@pytest.fixture
def receiver(settings):
    """A live webhook receiver on 127.0.0.1, whose host is allowed (so plain http goes)."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def api(raw_key, sender):
    """An APIClient authenticated as `workspace`, whose sender ZECKTA is approved."""
    return api_client(raw_key)
