"""Asking for a drain task, coalesced: the outbox's rows are the work, a task only wakes a drainer.

Two outboxes drain this way: the SMS (otp.delivery.sms_drain) and the webhook deliveries
(webhooks.delivery.webhook_drain). A writer commits its row, then `ask()`s: it sets a Redis key (NX, for
SMS_DRAIN_NUDGE_MS) and publishes a drain task only when it set the key, so a burst of writers publishes one
task. A drain `hold()`s the key before each claim (for a few polls, `hold_ms()`) and `release()`s it before
the claim that lets it end.

Why nothing is left behind: a writer's row is committed before it asks. A writer that finds the key set
knows a drain will claim after its commit (the key is there while a drain works, and a drain deletes it
before its last claim); one that finds it gone publishes. The key's expiry bounds what a lost publish or a
killed drain can hold up, and each outbox's sweeper sends what is left (Redis or the broker down).

Why a working drain holds the key rather than deleting it before each claim (the first design): then every
claim let the next writer publish a task, and compare.sh counted a drain task for every two SMS, each
costing the request a publish and the worker a task.
"""

import logging
from collections.abc import Callable
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short time-outs: writers ask after their commit, and a hung Redis must not hold a request.
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False)


def nudge_redis() -> redis.Redis | None:
    return _client(settings.REDIS_URL) if settings.REDIS_URL else None


def hold_ms() -> int:
    """How long a drain's claim holds the key: a few of its polls, so that a drain at work keeps it without
    a gap, and one that stopped (killed, stuck) lets writers publish again soon after."""
    return max(4 * settings.SMS_DRAIN_POLL_MS, settings.SMS_DRAIN_NUDGE_MS)


class DrainNudge:
    """The key of one outbox's drainers, and how to publish its drain task (`publish` never raises)."""

    def __init__(self, key: str, *, what: str, publish: Callable[[], None]) -> None:
        self.key, self.what, self.publish = key, what, publish

    def ask(self) -> None:
        """Publishes a drain task unless one is asked for or at work; never raises."""
        client = nudge_redis()
        if client is not None:
            try:
                if not client.set(self.key, b"1", nx=True, px=settings.SMS_DRAIN_NUDGE_MS):
                    return
            except redis.RedisError as exc:
                logger.warning("could not set the %s nudge (%s); publishing anyway", self.what, exc)
        self.publish()

    def hold(self) -> None:
        self._command("hold", lambda client: client.set(self.key, b"1", px=hold_ms()))

    def release(self) -> None:
        self._command("clear", lambda client: client.delete(self.key))

    def _command(self, verb: str, command: Callable[[redis.Redis], object]) -> None:
        client = nudge_redis()
        if client is None:
            return
        try:
            command(client)
        except redis.RedisError as exc:
            logger.warning("could not %s the %s nudge: %s", verb, self.what, exc)
