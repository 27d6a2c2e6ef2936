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
LEASE_FRACTION = 64  # a busy key's process takes up to 1/64 of its second's calls per Redis round trip

# KEYS: 1 the current one-second window (a hash: s = its second, c = its count), 2 refusals (strikes),
#       3 the cool-down, 4 the cool-down level. Every key is declared and shares one hash tag, so the script
#       runs on one Redis Cluster node.
# ARGV: 1 limit, 2 strikes per unit of limit, 3 strike window (s), 4 longest cool-down (s), 5 level memory (s),
#       6 now (unix seconds, the service's clock: one clock for the window and the headers it answers),
#       7 calls wanted (a lease: the caller spends them in this second without asking again).
# Returns {allowed, remaining, reset_at, retry_after, granted}; during a cool-down reset_at = now + retry_after.
SCRIPT = """
local second = tonumber(ARGV[6])
local limit = tonumber(ARGV[1])
local blocked = redis.call('TTL', KEYS[3])
if blocked > 0 then
  return {0, 0, second + blocked, blocked, 0}
end
local count = 0
local stored = tonumber(redis.call('HGET', KEYS[1], 's'))
if stored and stored >= second then
  -- This second's window, or a newer one that another process opened while this call was on its way (its
  -- clock read just before the second turned): counted there. Resetting to the older second would let
  -- the newer window count from zero twice.
  second = stored
  count = tonumber(redis.call('HGET', KEYS[1], 'c'))
else
  redis.call('HSET', KEYS[1], 's', second, 'c', 0)
end
redis.call('EXPIRE', KEYS[1], 2)
if count < limit then
  local granted = math.min(tonumber(ARGV[7]), limit - count)
  redis.call('HINCRBY', KEYS[1], 'c', granted)
  return {1, limit - count - granted, second + 1, 0, granted}
end
local strikes = redis.call('INCR', KEYS[2])
if strikes == 1 then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3])) end
if strikes >= limit * tonumber(ARGV[2]) then
  local level = redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
  local cooldown = math.min(2 ^ level, tonumber(ARGV[4]))
  redis.call('SET', KEYS[3], '1', 'EX', cooldown)
  redis.call('DEL', KEYS[2])
  return {0, 0, second + cooldown, cooldown, 0}
end
return {0, 0, second + 1, 1, 0}
"""

# KEYS: 1 this address's failures in the current minute. ARGV: 1 seconds the counter lives.
AUTH_FAILURE_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1])) end
return count
"""


def redis_keys(key_id: int) -> list[str]:
    """The keys of one API key's limit, in the script's KEYS order: one hash tag, one cluster slot."""
    base = f"zeckta:rl:{{{key_id}}}"
    return [f"{base}:w", f"{base}:strikes", f"{base}:block", f"{base}:level"]


def auth_failure_key(address: str, minute: int) -> str:
    return f"zeckta:rl:{{auth:{address}}}:{minute}"


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


@dataclass(frozen=True)
class AuthFailureDecision:
    blocked: bool
    retry_after: int  # whole seconds until the address's window ends; 0 when not blocked


class RateLimiter(Protocol):
    def check(self, *, key_id: int, limit: int) -> RateDecision:
        """Counts one request of API key `key_id` against `limit` requests per second."""
        ...

    def count_auth_failure(self, *, address: str, limit: int) -> AuthFailureDecision:
        """Counts one request without a valid key from `address`; blocked past `limit` in its minute."""
        ...


def _auth_failure_decision(count: int, limit: int, now: float) -> AuthFailureDecision:
    if count <= limit:
        return AuthFailureDecision(False, 0)
    return AuthFailureDecision(True, max(60 - int(now) % 60, 1))


def lease_size(limit: int) -> int:
    """Calls a process takes from Redis at once for a key of `limit` per second: 1 (every call asks Redis,
    exactly as the limit reads) below LEASE_FRACTION * 2 per second, else limit / LEASE_FRACTION. The limit
    still holds exactly across processes (Redis grants each call once); what a lease costs is that calls
    one process holds unspent in a second cannot serve another process: at most processes / LEASE_FRACTION
    of the rate, never more calls than it."""
    return max(limit // LEASE_FRACTION, 1)


@dataclass
class _Lease:
    second: int
    limit: int
    left: int  # calls granted and not yet spent in this process
    remaining: int  # the key's calls Redis had left to grant after this lease


class RedisRateLimiter:
    """Shared by every process that uses the same Redis: the limit holds across web instances.

    A busy key's calls are leased: one Redis round trip grants a process several calls of the current
    second (lease_size), spent locally. Below 128 calls per second nothing changes: one call, one ask.
    """

    def __init__(self, url: str) -> None:
        # Short timeouts and no retries: a limiter that cannot answer at once must not hold the request.
        client = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False, health_check_interval=30
        )
        self._script = client.register_script(SCRIPT)
        self._auth_failure_script = client.register_script(AUTH_FAILURE_SCRIPT)
        self._leases: dict[int, _Lease] = {}
        self._lock = threading.Lock()

    def check(self, *, key_id: int, limit: int) -> RateDecision:
        second = int(time.time())
        with self._lock:
            lease = self._leases.get(key_id)
            if lease is not None and lease.second == second and lease.limit == limit and lease.left > 0:
                lease.left -= 1
                return RateDecision(True, limit, lease.remaining + lease.left, second + 1, 0)
        wanted = lease_size(limit)
        try:
            allowed, remaining, reset_at, retry_after, granted = self._script(
                keys=redis_keys(key_id),
                args=[
                    limit,
                    STRIKES_PER_TPS,
                    STRIKE_WINDOW_SECONDS,
                    settings.RATE_LIMIT_MAX_COOLDOWN_SECONDS,
                    LEVEL_MEMORY_SECONDS,
                    second,
                    wanted,
                ],
            )
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(str(exc)) from None
        left = int(granted) - 1 if allowed else 0
        if wanted > 1:
            with self._lock:
                if len(self._leases) > 10_000:
                    self._leases.clear()  # leases live one second: a full table is only stale ones
                self._leases[key_id] = _Lease(second, limit, left, int(remaining))
        return RateDecision(bool(allowed), limit, int(remaining) + left, int(reset_at), int(retry_after))

    def count_auth_failure(self, *, address: str, limit: int) -> AuthFailureDecision:
        now = time.time()
        try:
            count = self._auth_failure_script(keys=[auth_failure_key(address, int(now) // 60)], args=[120])
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(str(exc)) from None
        return _auth_failure_decision(int(count), limit, now)


class LocmemRateLimiter:
    """The same fixed one-second window, in process memory: only for `make run` with no REDIS_URL,
    where a single process serves everything. Without cool-down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, tuple[int, int]] = {}
        self._auth_failures: dict[str, tuple[int, int]] = {}

    def check(self, *, key_id: int, limit: int) -> RateDecision:
        second = int(time.time())
        with self._lock:
            window, count = self._windows.get(key_id, (second, 0))
            count = count + 1 if window == second else 1
            self._windows[key_id] = (second, count)
        allowed = count <= limit
        return RateDecision(allowed, limit, max(limit - count, 0), second + 1, 0 if allowed else 1)

    def count_auth_failure(self, *, address: str, limit: int) -> AuthFailureDecision:
        now = time.time()
        minute = int(now) // 60
        with self._lock:
            window, count = self._auth_failures.get(address, (minute, 0))
            count = count + 1 if window == minute else 1
            self._auth_failures[address] = (minute, count)
        return _auth_failure_decision(count, limit, now)


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
