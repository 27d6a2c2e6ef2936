"""The Celery beat scheduler of this service: it sends the periodic tasks only while it holds a lock in Redis.

Two beats would each send every periodic task: two workers started with `-B`, or a beat on each of two
machines. The work is idempotent (the sweepers' claims, the purges), but it runs twice as often as the
schedule says. So every beat takes part in one election: the lock is a Redis key holding the beat's
token, set with NX and a TTL (BEAT_LOCK_TTL_SECONDS) and renewed on every tick, every third of the TTL.
A beat that does not hold it stands by and asks again at the same pace; when the holder dies, its key
expires and a standby takes over within one TTL and a third. A holder that stops cleanly deletes the key.

The time each periodic task last ran is kept in Redis beside the lock, not in a local schedule file, so
a beat that takes over (or restarts with a deploy) goes on with the schedule where it stood: an hourly
purge still runs hourly when beat restarts more often than that.

Lost lock, lost Redis: a beat that cannot renew stops sending at once; while Redis is down it could not
publish anyway (the broker is the same Redis, or the sweepers it runs need it).

Why not celery-redbeat, which also keeps a lock and the schedule in Redis: its election is of another kind.
It takes the lock once, at start-up (`beat_init`), blocking there and asking again every `max_interval`
(300 s by default), and the lock lives `lock_timeout` (five `max_interval`s, 25 minutes by default): a
holder that dies leaves the periodic work stopped that long unless both are tuned down. A holder that loses
its lock (Redis restarted without persistence, a pause past the TTL) fails its next `extend` with an
exception and beat exits, where this one stands by and competes again. redbeat's schedule in Redis is
editable at run time (entries created through its API), which this service does not use: its schedule is
CELERY_BEAT_SCHEDULE, and only the last runs need sharing. What is left is about a hundred lines over
Celery's own Scheduler, tested by zeckta/tests/test_beat.py and, with real processes, by
otp/tests/test_scale_out.py (two beats, one sender, a takeover when the holder is killed).
"""

import logging
import os
import socket
import uuid
from datetime import datetime
from typing import Any

import redis
from celery.beat import ScheduleEntry, Scheduler
from django.conf import settings

logger = logging.getLogger(__name__)

# One hash tag: both keys live in the same Redis Cluster slot (docs/operations.md, Redis Cluster).
LOCK_KEY = "zeckta:beat:{beat}:lock"
LAST_RUN_KEY = "zeckta:beat:{beat}:last-run"  # hash: periodic task's name -> ISO time it was last sent

# Take the lock when it is free, or extend it when it is already ours; 1 when this beat holds it now.
# KEYS: 1 the lock. ARGV: 1 this beat's token, 2 the TTL in milliseconds.
ACQUIRE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return 1
end
return 0
"""

# Delete the lock only if it is still ours (it may have expired and gone to another beat meanwhile).
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def lock_redis_url() -> str:
    """Where the lock lives: REDIS_URL, else the broker when it is a Redis; empty when there is none."""
    if settings.REDIS_URL:
        return settings.REDIS_URL
    broker = settings.CELERY_BROKER_URL or ""
    return broker if broker.startswith(("redis://", "rediss://", "unix://")) else ""


class LockedScheduler(Scheduler):
    """celery.beat.Scheduler that ticks only while it holds the beat lock (settings.CELERY_BEAT_SCHEDULER)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.lock_ttl = float(settings.BEAT_LOCK_TTL_SECONDS)  # seconds
        self.renew_interval = self.lock_ttl / 3  # seconds between two renewals, or two tries when standing by
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.holding = False
        self._client: redis.Redis | None = None
        self._acquire: Any = None
        self._release: Any = None
        self._warned_unlocked = False
        self._announced_standby = False
        super().__init__(*args, **kwargs)

    # --- the lock -------------------------------------------------------------------------------

    def _redis(self) -> redis.Redis | None:
        if self._client is None:
            url = lock_redis_url()
            if not url:
                return None
            # Short timeouts: a beat that cannot ask Redis stands by rather than hangs.
            self._client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
            self._acquire = self._client.register_script(ACQUIRE_SCRIPT)
            self._release = self._client.register_script(RELEASE_SCRIPT)
        return self._client

    def _hold_lock(self) -> bool:
        if self._redis() is None:
            if not self._warned_unlocked:
                logger.warning("beat: no Redis to hold the beat lock in; run exactly one beat")
                self._warned_unlocked = True
            return True
        try:
            return bool(self._acquire(keys=[LOCK_KEY], args=[self.token, int(self.lock_ttl * 1000)]))
        except redis.RedisError as exc:
            logger.warning("beat: cannot reach Redis for the beat lock (%s); not sending until it answers", exc)
            return False

    def release_lock(self) -> None:
        if self.holding and self._redis() is not None:
            try:
                self._release(keys=[LOCK_KEY], args=[self.token])
            except redis.RedisError:
                logger.warning("beat: could not release the beat lock; it expires in %.0fs", self.lock_ttl)
        self.holding = False

    # --- the schedule's last runs, shared through Redis ------------------------------------------

    def _load_last_runs(self) -> None:
        """Takes the last run of each periodic task from Redis, where the previous holder left it."""
        client = self._redis()
        if client is None:
            return
        try:
            stored = client.hgetall(LAST_RUN_KEY)
        except redis.RedisError:
            return
        for raw_name, raw_time in stored.items():
            entry = self.schedule.get(_text(raw_name))
            if entry is not None:
                entry.last_run_at = datetime.fromisoformat(_text(raw_time))
        self._heap = None  # rebuilt from the entries' new times on this tick

    def reserve(self, entry: ScheduleEntry) -> ScheduleEntry:
        new_entry = super().reserve(entry)
        client = self._redis()
        if client is not None:
            try:
                client.hset(LAST_RUN_KEY, entry.name, new_entry.last_run_at.isoformat())
            except redis.RedisError:
                logger.warning("beat: could not record the last run of %s", entry.name)
        return new_entry

    # --- Scheduler ------------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        holding = self._hold_lock()
        if holding and not self.holding:
            logger.info("beat: %s took the beat lock: sending the periodic tasks", self.token)
            self._load_last_runs()
        elif self.holding and not holding:
            logger.warning("beat: %s lost the beat lock: standing by", self.token)
        elif not holding and not self._announced_standby:
            logger.info("beat: the beat lock is held elsewhere; %s stands by", self.token)
            self._announced_standby = True
        self.holding = holding
        if not holding:
            return self.renew_interval
        # Never sleep past the next renewal: the lock must not expire while its holder is alive.
        return min(super().tick(*args, **kwargs), self.renew_interval)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_lock()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
