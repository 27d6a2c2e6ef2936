"""One beat sends: the beat lock in Redis (zeckta.beat), with schedulers side by side in this process.

The real process layout (two workers started with -B, one killed) is in otp/tests/test_scale_out.py.
"""

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings

from zeckta.beat import LAST_RUN_KEY, LOCK_KEY, LockedScheduler
from zeckta.celery import app as celery_app


class RecordingScheduler(LockedScheduler):
    """Records what it would publish instead of publishing it."""

    def __init__(self, *args, **kwargs) -> None:
        self.sent: list[str] = []
        super().__init__(*args, **kwargs)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        self.sent.append(entry.name)


@pytest.fixture
def lock_redis(settings) -> Iterator[redis.Redis]:
    settings.BEAT_LOCK_TTL_SECONDS = 3
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(LOCK_KEY, LAST_RUN_KEY)
    yield client
    client.delete(LOCK_KEY, LAST_RUN_KEY)


def scheduler() -> RecordingScheduler:
    return RecordingScheduler(app=celery_app)


def run_due(beat: LockedScheduler) -> float:
    """Ticks until nothing is due at once; returns the sleep the last tick asked for."""
    for _ in range(50):
        delay = beat.tick()
        if delay:
            return delay
    raise AssertionError("beat kept finding due tasks")


def test_it_is_the_scheduler_celery_beat_and_worker_b_use():
    assert celery_app.conf.beat_scheduler == "zeckta.beat:LockedScheduler"


def test_of_two_beats_only_the_lock_holder_sends(lock_redis):
    first, second = scheduler(), scheduler()
    for entry in [*first.schedule.values(), *second.schedule.values()]:
        entry.last_run_at -= timedelta(hours=2)  # every periodic task is due

    run_due(first)
    run_due(second)

    assert first.holding and not second.holding
    assert sorted(first.sent) == sorted(settings.CELERY_BEAT_SCHEDULE)  # each one once
    assert second.sent == []
    assert lock_redis.get(LOCK_KEY).decode() == first.token


def test_the_holder_never_sleeps_past_its_renewal_and_renewing_extends_the_lock(lock_redis):
    beat = scheduler()

    delay = run_due(beat)

    assert 0 < delay <= beat.renew_interval == 1.0  # a third of the 3 s TTL
    lock_redis.pexpire(LOCK_KEY, 500)
    beat.tick()
    assert lock_redis.pttl(LOCK_KEY) > 2000  # renewed to the whole TTL


def test_a_standby_takes_over_when_the_holder_stops_and_goes_on_with_its_schedule(lock_redis):
    first, second = scheduler(), scheduler()
    for entry in [*first.schedule.values(), *second.schedule.values()]:
        entry.last_run_at -= timedelta(hours=2)
    run_due(first)
    run_due(second)
    assert second.sent == []

    first.close()  # a clean stop hands the lock over at once
    assert lock_redis.get(LOCK_KEY) is None
    run_due(second)

    assert second.holding
    # The standby's own entries were due (it started "two hours ago" for nothing), but the schedule's last
    # runs come from Redis, where the first beat left them a moment ago: nothing is sent twice.
    assert second.sent == []
    stored = {name.decode() for name in lock_redis.hgetall(LAST_RUN_KEY)}
    assert stored == set(settings.CELERY_BEAT_SCHEDULE)


def test_a_holder_that_died_is_replaced_once_its_lock_expires(lock_redis):
    first, second = scheduler(), scheduler()
    run_due(first)
    run_due(second)
    assert first.holding and not second.holding

    lock_redis.delete(LOCK_KEY)  # what the TTL does once the dead holder stops renewing
    run_due(second)

    assert second.holding
    first.tick()  # back from a pause: it finds the lock taken and stops sending
    assert not first.holding


def test_a_beat_that_cannot_reach_redis_sends_nothing(lock_redis, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    beat = scheduler()
    for entry in beat.schedule.values():
        entry.last_run_at -= timedelta(hours=2)

    assert beat.tick() == beat.renew_interval

    assert beat.sent == [] and not beat.holding
