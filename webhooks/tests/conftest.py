"""The broker's queue, emptied around each webhook test: retries are published for real. (The `receiver`
fixture, a live receiver on loopback, is the project's: the otp tests use it too.)"""

from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from webhooks.delivery import WEBHOOK_DRAIN_KEY, WEBHOOKS_QUEUE
from zeckta.celery import app as celery_app


@pytest.fixture(autouse=True)
def broker() -> Iterator[redis.Redis]:
    """The test run's own Redis broker db (REDIS_URL names a db for tests only), its queue emptied."""
    client = redis.Redis.from_url(celery_app.conf.broker_url, socket_timeout=2)
    client.delete(WEBHOOKS_QUEUE)
    nudge = redis.Redis.from_url(settings.REDIS_URL)
    nudge.delete(WEBHOOK_DRAIN_KEY)  # a nudge left by the test before would keep this one's events from asking
    yield client
    client.delete(WEBHOOKS_QUEUE)
    nudge.delete(WEBHOOK_DRAIN_KEY)
