"""The broker's queue, emptied around each webhook test: retries are published for real. (The `receiver`
fixture, a live receiver on loopback, is the project's: the otp tests use it too.)"""

from collections.abc import Iterator

import pytest
import redis

from webhooks.delivery import WEBHOOKS_QUEUE
from zeckta.celery import app as celery_app


@pytest.fixture(autouse=True)
def broker() -> Iterator[redis.Redis]:
    """The test run's own Redis broker db (REDIS_URL names a db for tests only), its queue emptied."""
    client = redis.Redis.from_url(celery_app.conf.broker_url, socket_timeout=2)
    client.delete(WEBHOOKS_QUEUE)
    yield client
    client.delete(WEBHOOKS_QUEUE)
