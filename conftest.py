"""Shared fixtures: a workspace with an approved sender and a live API key, and an authenticated client."""

import pytest
import redis
from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import OperationalError

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
