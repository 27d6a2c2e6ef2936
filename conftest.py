"""Shared fixtures: a workspace with an approved sender and a live API key, and an authenticated client."""

import pytest
import redis

from senders.gateways import locmem
from senders.routes import routes_changed
from senders.tests.factories import SenderNameFactory
from webhooks.tests.receiver import Receiver
from workspaces.tests.factories import WorkspaceFactory, issue_key
from zeckta.localcache import local_caches_clear
from zeckta.testing import api_client


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
