"""Fixtures for webhook tests: a live receiver on loopback (its host allowed, so plain http goes), and the
broker's queue, emptied around each test (retries are published for real)."""

from collections.abc import Iterator

import pytest
import redis

from webhooks.tests.receiver import Receiver
from zeckta.celery import app as celery_app


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture(autouse=True)
def broker() -> Iterator[redis.Redis]:
    """The test run's own Redis broker db (REDIS_URL names a db for tests only), its queue emptied."""
    client = redis.Redis.from_url(celery_app.conf.broker_url, socket_timeout=2)
    client.delete(celery_app.conf.task_default_queue)
    yield client
    client.delete(celery_app.conf.task_default_queue)
