"""Per-API-key request rate, counted atomically in Redis.

One Lua script does the whole decision, so counters always get their TTL and concurrent requests
cannot slip past the limit. A key that keeps calling after its 429s is put in a cool-down that doubles
each time (2, 4, 8 ... seconds, at most RATE_LIMIT_MAX_COOLDOWN_SECONDS), like hosted SMS APIs do.
"""

import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Refused calls within STRIKE_WINDOW_SECONDS, as a multiple of the key's rate, that start a cool-down.
STRIKES_PER_TPS = 3
STRIKE_WINDOW_SECONDS = 60
LEVEL_MEMORY_SECONDS = 3600  # how long a past cool-down keeps the next one longer

_SCRIPT = """
local now = redis.call('TIME')
local second = tonumber(now[1])
local limit = tonumber(ARGV[1])
local blocked = redis.call('TTL', KEYS[3])
if blocked > 0 then
  return {0, 0, second + 1, blocked}
end
local window = KEYS[1] .. ':' .. second
local count = redis.call('INCR', window)
if count == 1 then redis.call('EXPIRE', window, 2) end
if count <= limit then
  return {1, limit - count, second + 1, 0}
end
local strikes = redis.call('INCR', KEYS[2])
if strikes == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) end
if strikes >= limit * tonumber(ARGV[2]) then
  local level = redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
  local cooldown = math.min(2 ^ level, tonumber(ARGV[4]))
  redis.call('SET', KEYS[3], '1', 'EX', cooldown)
  redis.call('DEL', KEYS[2])
  return {0, 0, second + 1, cooldown}
end
return {0, 0, second + 1, 1}
"""


class RateLimiterUnavailable(Exception):
    """Redis could not be asked; the caller decides whether to fail closed."""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the current window ends
    retry_after: int  # whole seconds; 0 when allowed

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter(Protocol):
    def check(self, *, key_id: int, limit: int) -> RateDecision:
        """Counts one request of API key `key_id` against `limit` requests per second."""
        ...


class RedisRateLimiter:
    """Shared by every process that uses the same Redis: the limit holds across web instances."""

    def __init__(self, url: str) -> None:
        # Short timeouts and no retries: a limiter that cannot answer at once must not hold the request.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False, health_check_interval=30
        )
        self._script = client.register_script(_SCRIPT)

    def check(self, *, key_id: int, limit: int) -> RateDecision:
        base = f"zeckta:rl:{key_id}"
        try:
            allowed, remaining, reset_at, retry_after = self._script(
                keys=[f"{base}:w", f"{base}:strikes", f"{base}:block", f"{base}:level"],
                args=[limit, STRIKES_PER_TPS, STRIKE_WINDOW_SECONDS, settings.RATE_LIMIT_MAX_COOLDOWN_SECONDS,
                      LEVEL_MEMORY_SECONDS],
            )
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(str(exc)) from None
        return RateDecision(bool(allowed), limit, int(remaining), int(reset_at), int(retry_after))


class LocmemRateLimiter:
    """The same fixed one-second window, in process memory: only for `make run` with no REDIS_URL,
    where a single process serves everything. Without cool-down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, tuple[int, int]] = {}

    def check(self, *, key_id: int, limit: int) -> RateDecision:
        second = int(time.time())
        with self._lock:
            window, count = self._windows.get(key_id, (second, 0))
            count = count + 1 if window == second else 1
            self._windows[key_id] = (second, count)
        allowed = count <= limit
        return RateDecision(allowed, limit, max(limit - count, 0), second + 1, 0 if allowed else 1)


@lru_cache(maxsize=4)
def _limiter(backend: str, redis_url: str) -> RateLimiter:
    if backend == "redis":
        return RedisRateLimiter(redis_url)
    if backend == "locmem":
        return LocmemRateLimiter()
    raise ImproperlyConfigured(f"RATE_LIMIT_BACKEND must be 'redis' or 'locmem', not {backend!r}")


def get_rate_limiter() -> RateLimiter:
    """The limiter settings.RATE_LIMIT_BACKEND names, one per process (it holds the Redis connection pool)."""
    return _limiter(settings.RATE_LIMIT_BACKEND, settings.REDIS_URL)


def check_rate(*, key_id: int, limit: int) -> RateDecision:
    """Counts one request of API key `key_id` against `limit` requests per second."""
    return get_rate_limiter().check(key_id=key_id, limit=limit)
