"""The fraud guard's Redis side: the velocity rules and the block check, decided on the request path.

One Lua script per live OTP request or resend decides atomically, across every web process and machine:
is the number's range or country blocked (in this workspace's mode), and would this request be the 11th
distinct number of its range within the window (range_velocity), or the 51st of a country new to the
workspace (country_velocity), while none of the earlier ones was approved. When a rule trips the script
sets the block key at once, so a concurrent request for the same range is refused by the same script a
moment later: twenty concurrent requests to twenty new numbers of one range send ten SMS.

The conversion rules need sessions judged over hours (otp.fraudrules, from beat, in SQL); their blocks
reach the request path through this mirror (`block_mirror`, `blocks_mirror`), as every block does: the
database is the record, Redis the copy the request path reads. Lost Redis: `blocks_mirror` rewrites it.

Keys, all under one hash tag per workspace (`{fraud:<id>}`: one Redis Cluster slot, so one script can touch
them all):
- `block:<mode>:<scope>:<value>`: an active block of that mode; its value is the end (unix ms, the
  service's clock, as every time here) and it expires with it.
- `numbers:<scope>:<value>`: a sorted set of the numbers sent to within the rule's window, scored by
  when (ms).
- `approved:<scope>:<value>`: when a session of that range or country was last approved (ms).
- `blocks`: a hash of every block the keys above hold (field `<mode>:<scope>:<value>`, the end in ms), so that
  a process can hold a workspace's blocks for LOCAL_CACHE_SECONDS and check a number it knows is counted
  without a round trip (`guard_check`); ended fields stay until the hash expires with its longest block.
- `history`: the countries the workspace has sent enough to before (country_velocity leaves them alone),
  written by beat (otp.fraudrules); its field `_` says the list is known. Without it, country_velocity
  judges nothing: a Redis that lost it must not make every country new.

A number this process saw counted (the script answered `ok`) stays in both counts for the shortest of the two
windows: until then, a rule cannot trip on it (a number already counted never trips), so the script could only
answer "blocked" or "ok". Within that time `guard_check` asks no Redis at all: a reused request, the usual repeat
of a login, costs nothing, and in `enforce` the answer comes from the workspace's blocks as this process last
read them (at most LOCAL_CACHE_SECONDS old, as keys are; the blocks this process sets or lifts, at once).

Times are the service's clock (passed in), not Redis's: the decision and the record agree, and tests that
move the clock move both.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import phonenumbers
import redis
from django.conf import settings
from django.db.models import Q

from fraud.models import FraudBlock, number_range
from workspaces.models import FraudGuardMode, Workspace
from zeckta.localcache import LocalCache, LocalMarks

logger = logging.getLogger(__name__)

RANGE, COUNTRY = "range", "country"
HISTORY_KNOWN = "_"  # the history hash's field that says beat has written it

# KEYS: 1 this mode's block of the range, 2 of the country, 3 the range's numbers, 4 the country's numbers,
#       5 the range's last approval, 6 the country's, 7 the workspace's country history, 8 its blocks hash.
# ARGV: 1 mode, 2 now (unix ms), 3 the number, 4 its country ('' for none),
#       5 range numbers allowed, 6 range window (ms), 7 range block (ms),
#       8 country numbers allowed, 9 country window (ms), 10 country block (ms), 11 the number's range.
# Returns {'ok', counted}, {'blocked', scope}, or {'tripped', scope, numbers[, scope, numbers]}: the scopes
# whose rule this request tripped, with the distinct numbers counted (this one included). `counted` is 1
# when this request put the number into a count it was not in (`guard_uncount` takes it out again).
# In either mode a request that is blocked or trips is not counted: in enforce it sends nothing, and a
# shadow run counts what enforce would have counted, so that it records the same decisions.
SCRIPT = """
local now = tonumber(ARGV[2])
local dest = ARGV[3]
local country = ARGV[4]
local function active(key)
  local ends = redis.call('GET', key)
  return ends and tonumber(ends) > now
end
if active(KEYS[1]) then return {'blocked', 'range'} end
if country ~= '' and active(KEYS[2]) then return {'blocked', 'country'} end

-- The distinct numbers a rule would count with this one, when that passes its limit with no approval in
-- its window; nil otherwise (a number already counted never trips: a reuse or resend sends it nothing new).
local function crowded(numbers, approved, limit, window)
  redis.call('ZREMRANGEBYSCORE', numbers, '-inf', now - window)
  if redis.call('ZSCORE', numbers, dest) then return nil end
  local count = redis.call('ZCARD', numbers)
  if count < limit then return nil end
  local last = redis.call('GET', approved)
  if last and tonumber(last) > now - window then return nil end
  return count + 1
end
local function block(key, scope, value, ms)
  redis.call('SET', key, now + ms, 'PX', ms)
  redis.call('HSET', KEYS[8], ARGV[1] .. ':' .. scope .. ':' .. value, now + ms)
  if redis.call('PTTL', KEYS[8]) < ms then redis.call('PEXPIRE', KEYS[8], ms) end
end

local tripped = {}
local range_window, country_window = tonumber(ARGV[6]), tonumber(ARGV[9])
local range_count = crowded(KEYS[3], KEYS[5], tonumber(ARGV[5]), range_window)
if range_count then
  block(KEYS[1], 'range', ARGV[11], tonumber(ARGV[7]))
  tripped = {'tripped', 'range', range_count}
  if ARGV[1] == 'enforce' then return tripped end
end
-- country_velocity judges only a country the workspace is new to, once beat has said which those are.
local judge_country = country ~= '' and redis.call('HEXISTS', KEYS[7], '_') == 1
  and redis.call('HEXISTS', KEYS[7], country) == 0
if judge_country then
  local country_count = crowded(KEYS[4], KEYS[6], tonumber(ARGV[8]), country_window)
  if country_count then
    block(KEYS[2], 'country', country, tonumber(ARGV[10]))
    if #tripped == 0 then tripped = {'tripped'} end
    table.insert(tripped, 'country')
    table.insert(tripped, country_count)
  end
end
if #tripped > 0 then return tripped end

local counted = redis.call('ZADD', KEYS[3], now, dest)
redis.call('PEXPIRE', KEYS[3], range_window)
if judge_country then
  counted = counted + redis.call('ZADD', KEYS[4], now, dest)
  redis.call('PEXPIRE', KEYS[4], country_window)
end
return {'ok', counted}
"""

# KEYS: 1 the range's numbers, 2 the country's. ARGV: 1 the number, 2 when this request counted it (ms).
# Only if no later request counted it meanwhile (its time would be newer): that one was sent.
UNCOUNT_SCRIPT = """
for _, numbers in ipairs(KEYS) do
  local at = redis.call('ZSCORE', numbers, ARGV[1])
  if at and tonumber(at) == tonumber(ARGV[2]) then redis.call('ZREM', numbers, ARGV[1]) end
end
return 1
"""

# KEYS: 1 the range's last approval, 2 the country's. ARGV: 1 now (ms), 2 range window (ms), 3 country window.
APPROVED_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[1], 'PX', tonumber(ARGV[3])) end
return 1
"""

# KEYS: 1 a workspace's blocks hash. ARGV: 1 now (ms), then pairs of a field and its block's end (ms; an end
# not after now drops the field). The hash lives as long as its longest block.
BLOCKS_SCRIPT = """
local now = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local ends = tonumber(ARGV[i + 1])
  if ends > now then
    redis.call('HSET', KEYS[1], ARGV[i], ends)
    if redis.call('PTTL', KEYS[1]) < ends - now then redis.call('PEXPIRE', KEYS[1], ends - now) end
  else
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
"""


class GuardUnavailable(Exception):
    """Redis could not be asked: a live request must not be sent unguarded (the caller answers 503)."""


@dataclass(frozen=True)
class Trip:
    """A rule this request tripped: the block it calls for, and the evidence."""

    scope: str
    value: str
    rule: str
    mode: str
    evidence: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    refused: bool  # enforce only: the range or country is blocked, or this request tripped a rule
    trips: tuple[Trip, ...] = ()
    counted: bool = False  # this request's number is new in a count: `guard_uncount` if nothing is sent


ALLOWED = Verdict(refused=False)


def _prefix(workspace_id: int) -> str:
    return f"zeckta:fraud:{{fraud:{workspace_id}}}"


def block_key(workspace_id: int, mode: str, scope: str, value: str) -> str:
    return f"{_prefix(workspace_id)}:block:{mode}:{scope}:{value}"


def numbers_key(workspace_id: int, scope: str, value: str) -> str:
    return f"{_prefix(workspace_id)}:numbers:{scope}:{value}"


def approved_key(workspace_id: int, scope: str, value: str) -> str:
    return f"{_prefix(workspace_id)}:approved:{scope}:{value}"


def history_key(workspace_id: int) -> str:
    return f"{_prefix(workspace_id)}:history"


def blocks_key(workspace_id: int) -> str:
    return f"{_prefix(workspace_id)}:blocks"


def _block_field(mode: str, scope: str, value: str) -> str:
    return f"{mode}:{scope}:{value}"


# The numbers this process saw counted, (workspace id, number) -> until when (ms) they stay counted; and each
# workspace's blocks (field -> end, ms) as this process last read them from its `blocks` hash.
_counted = LocalMarks("fraud guard: numbers counted")
_blocks: LocalCache[dict[str, int]] = LocalCache("fraud guard: blocks")


def _local_forget() -> None:
    """Blocks were set, mirrored or lifted in this process: read them again at the next check."""
    _blocks.clear()


def number_country(dest: str) -> str:
    """The region of an E.164 number as otp.destinations finds it (ISO 3166 alpha-2, or "001"), "" if none."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(dest, None)) or ""
    except phonenumbers.NumberParseException:
        return ""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class _Redis:
    client: redis.Redis
    check: Any  # redis.commands.core.Script
    approved: Any
    uncount: Any
    blocks: Any


@lru_cache(maxsize=4)
def _connect(url: str) -> _Redis:
    # Short timeouts and no retries, as the rate limiter's: a guard that cannot answer at once must not
    # hold the request (it answers 503 instead).
    client = redis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False, health_check_interval=30
    )
    return _Redis(
        client,
        client.register_script(SCRIPT),
        client.register_script(APPROVED_SCRIPT),
        client.register_script(UNCOUNT_SCRIPT),
        client.register_script(BLOCKS_SCRIPT),
    )


def _redis() -> _Redis | None:
    """The guard's Redis, or None without REDIS_URL (`make run`'s embedded mode: one process, no guard)."""
    if not settings.REDIS_URL:
        _warn_unguarded()
        return None
    return _connect(settings.REDIS_URL)


@lru_cache(maxsize=1)
def _warn_unguarded() -> None:
    logger.warning("fraud guard: no REDIS_URL, so no guard: SMS pumping is not blocked in this mode")


def guard_check(*, workspace: Workspace, dest: str, country: str, now: datetime) -> Verdict:
    """Asks the script about one live request or resend for `dest` (not a test key's, not a reviewer or
    safe-listed number's: the caller leaves those out, and a workspace whose guard is off).

    One Redis round trip, or none for a number this process saw counted within the rules' windows (a reused
    session's, most often): then only the workspace's blocks are checked, as this process holds them.
    Raises GuardUnavailable when Redis cannot answer."""
    connection = _redis()
    if connection is None:
        return ALLOWED
    mode = workspace.fraud_guard_mode
    workspace_id = workspace.pk
    now_ms = _ms(now)
    if _counted.holds((workspace_id, dest), now_ms):
        return _counted_verdict(
            connection, workspace_id=workspace_id, mode=mode, dest=dest, country=country, now_ms=now_ms
        )
    value = number_range(dest)
    try:
        answer = connection.check(
            keys=[
                block_key(workspace_id, mode, RANGE, value),
                block_key(workspace_id, mode, COUNTRY, country),
                numbers_key(workspace_id, RANGE, value),
                numbers_key(workspace_id, COUNTRY, country),
                approved_key(workspace_id, RANGE, value),
                approved_key(workspace_id, COUNTRY, country),
                history_key(workspace_id),
                blocks_key(workspace_id),
            ],
            args=[
                mode,
                now_ms,
                dest,
                country,
                workspace.fraud_range_velocity_numbers,
                workspace.fraud_range_velocity_window_seconds * 1000,
                workspace.fraud_range_velocity_block_seconds * 1000,
                workspace.fraud_country_velocity_numbers,
                workspace.fraud_country_velocity_window_seconds * 1000,
                workspace.fraud_country_velocity_block_seconds * 1000,
                value,
            ],
        )
    except redis.RedisError as exc:
        raise GuardUnavailable(str(exc)) from None
    outcome = _text(answer[0])
    enforce = mode == FraudGuardMode.ENFORCE
    if outcome == "ok":
        # In both counts now (ZADD moved an earlier entry to now), so it stays counted for the shorter window.
        window_seconds = min(
            workspace.fraud_range_velocity_window_seconds, workspace.fraud_country_velocity_window_seconds
        )
        _counted.put((workspace_id, dest), now_ms + window_seconds * 1000)
        return Verdict(refused=False, counted=bool(int(answer[1])))
    if outcome == "blocked":
        return Verdict(refused=enforce)
    _local_forget()  # this process sees the block it just set at once
    trips = []
    for index in range(1, len(answer), 2):
        scope, numbers = _text(answer[index]), int(answer[index + 1])
        trips.append(
            Trip(
                scope=scope,
                value=value if scope == RANGE else country,
                rule="range_velocity" if scope == RANGE else "country_velocity",
                mode=mode,
                # A velocity rule counts numbers: each one asked for is a session, none approved.
                evidence={"sessions": numbers, "converted": 0, "numbers": numbers},
            )
        )
    return Verdict(refused=enforce, trips=tuple(trips))


def _counted_verdict(
    connection: "_Redis", *, workspace_id: int, mode: str, dest: str, country: str, now_ms: int
) -> Verdict:
    """What the script would answer for a number it counted within its windows: no rule can trip on it, so
    only a block refuses it, and only in `enforce` (in `shadow` a blocked number proceeds and is recorded
    nothing more). The blocks come from the workspace's `blocks` hash, read at most once per
    LOCAL_CACHE_SECONDS per process."""
    if mode != FraudGuardMode.ENFORCE:
        return ALLOWED

    def load() -> dict[str, int]:
        try:
            stored = connection.client.hgetall(blocks_key(workspace_id))
        except redis.RedisError as exc:
            raise GuardUnavailable(str(exc)) from None
        return {_text(field): int(end) for field, end in stored.items()}

    blocks = _blocks.get(workspace_id, load)
    blocked = blocks.get(_block_field(mode, RANGE, number_range(dest)), 0) > now_ms or (
        country != "" and blocks.get(_block_field(mode, COUNTRY, country), 0) > now_ms
    )
    return Verdict(refused=blocked)


def guard_blocked(*, workspace: Workspace, dest: str, country: str) -> bool:
    """Whether the workspace's guard, in its mode, blocks `dest`'s range or country now: the blocks alone,
    no rule counted. For a relayed SMS (API.md section 14): its code's entry is never seen, so it may feed
    no rule that waits for approvals, but every block applies to it. One Redis round trip; raises
    GuardUnavailable when Redis cannot answer."""
    connection = _redis()
    if connection is None:
        return False
    mode = workspace.fraud_guard_mode
    keys = [block_key(workspace.pk, mode, RANGE, number_range(dest)), block_key(workspace.pk, mode, COUNTRY, country)]
    try:
        return bool(connection.client.exists(*keys))
    except redis.RedisError as exc:
        raise GuardUnavailable(str(exc)) from None


def guard_uncount(*, workspace_id: int, dest: str, country: str, now: datetime) -> None:
    """Takes `dest` out of the counts `guard_check` put it in at `now`: the request was refused after it
    (a send limit, the daily cap, the prepaid balance) and sent nothing, so it is not a number sent to. A
    workspace at its cap, or out of units, must not find its countries blocked when it is served again.
    Never raises: left counted, the number only makes the guard stricter for its window."""
    _counted.discard((workspace_id, dest))  # no longer counted: the next request for it asks the script
    connection = _redis()
    if connection is None:
        return
    keys = [numbers_key(workspace_id, RANGE, number_range(dest))]
    if country:
        keys.append(numbers_key(workspace_id, COUNTRY, country))
    try:
        connection.uncount(keys=keys, args=[dest, _ms(now)])
    except redis.RedisError as exc:
        logger.warning("fraud guard: a refused request of workspace %s stays counted: %s", workspace_id, exc)


def guard_approved(*, workspace: Workspace, dest: str, at: datetime, country: str | None = None) -> None:
    """A live session of `dest` was approved (called once the verify committed): its range and country
    converted, so the velocity rules leave them open for their window. Never raises: a verify is never
    refused for the guard's sake, and a lost approval can only make the guard stricter, never looser."""
    connection = _redis()
    if connection is None:
        return
    country = number_country(dest) if country is None else country
    keys = [approved_key(workspace.pk, RANGE, number_range(dest))]
    if country:
        keys.append(approved_key(workspace.pk, COUNTRY, country))
    try:
        connection.approved(
            keys=keys,
            args=[
                _ms(at),
                workspace.fraud_range_velocity_window_seconds * 1000,
                workspace.fraud_country_velocity_window_seconds * 1000,
            ],
        )
    except redis.RedisError as exc:
        logger.warning("fraud guard: an approval in workspace %s could not be noted: %s", workspace.pk, exc)


def block_mirror(*, workspace_id: int, mode: str, scope: str, value: str, ends_at: datetime, now: datetime) -> None:
    """Writes one active block into Redis with its real end (escalation may have made it longer than the
    script's first guess). Raises redis.RedisError: callers decide whether that matters."""
    connection = _redis()
    if connection is None:
        return
    left_ms = _ms(ends_at) - _ms(now)
    if left_ms > 0:
        pipe = connection.client.pipeline(transaction=False)
        pipe.set(block_key(workspace_id, mode, scope, value), _ms(ends_at), px=left_ms)
        connection.blocks(
            keys=[blocks_key(workspace_id)],
            args=[_ms(now), _block_field(mode, scope, value), _ms(ends_at)],
            client=pipe,
        )
        pipe.execute()
    _local_forget()


def block_forget(*, workspace_id: int, scope: str, value: str) -> None:
    """A block was lifted: its Redis copy goes (either mode's: the mirror puts back within its interval any
    other that is still active), and so do that range's or country's counts and approval, so that the rule
    counts again from the lift (API.md section 13). Raises redis.RedisError."""
    connection = _redis()
    if connection is None:
        return
    modes = (FraudGuardMode.ENFORCE, FraudGuardMode.SHADOW)
    pipe = connection.client.pipeline(transaction=False)
    pipe.delete(
        *(block_key(workspace_id, mode, scope, value) for mode in modes),
        numbers_key(workspace_id, scope, value),
        approved_key(workspace_id, scope, value),
    )
    fields = [item for mode in modes for item in (_block_field(mode, scope, value), 0)]
    connection.blocks(keys=[blocks_key(workspace_id)], args=[0, *fields], client=pipe)
    pipe.execute()
    # The counts start again: the numbers this process saw counted are not any more.
    _local_forget()
    _counted.clear()


def blocks_mirror(*, now: datetime) -> int:
    """Rewrites Redis from the database's active blocks, and drops the copies of blocks lifted in the last
    FRAUD_MIRROR_LIFTS_SECONDS whose target has no other active block of that mode: Redis lost or
    restarted, a block written while it was down, a lift whose `block_forget` failed. Returns the blocks
    written. From beat (otp.tasks) every FRAUD_MIRROR_INTERVAL_SECONDS; a few hundred rows at most (blocks
    are rare), read in one query."""
    connection = _redis()
    if connection is None:
        return 0
    since = now - timedelta(seconds=settings.FRAUD_MIRROR_LIFTS_SECONDS)
    rows = FraudBlock.objects.filter(Q(lifted_at__isnull=True, ends_at__gt=now) | Q(lifted_at__gt=since)).values_list(
        "workspace_id", "mode", "scope", "value", "ends_at", "lifted_at"
    )
    active: dict[tuple[int, str, str, str], datetime] = {}
    lifted: set[tuple[int, str, str, str]] = set()
    for workspace_id, mode, scope, value, ends_at, lifted_at in rows:
        target = (workspace_id, mode, scope, value)
        if lifted_at is None:
            active[target] = max(ends_at, active.get(target, ends_at))
        else:
            lifted.add(target)
    pipe = connection.client.pipeline(transaction=False)
    fields: dict[int, list[str | int]] = {}  # each workspace's blocks hash: field, end (ms; 0 drops it)
    for workspace_id, mode, scope, value in lifted - active.keys():
        pipe.delete(block_key(workspace_id, mode, scope, value))
        fields.setdefault(workspace_id, []).extend((_block_field(mode, scope, value), 0))
    for (workspace_id, mode, scope, value), ends_at in active.items():
        pipe.set(block_key(workspace_id, mode, scope, value), _ms(ends_at), px=max(_ms(ends_at) - _ms(now), 1))
        fields.setdefault(workspace_id, []).extend((_block_field(mode, scope, value), _ms(ends_at)))
    for workspace_id, pairs in fields.items():
        connection.blocks(keys=[blocks_key(workspace_id)], args=[_ms(now), *pairs], client=pipe)
    pipe.execute()
    _local_forget()
    return len(active)


def history_write(*, known: Iterable[tuple[int, Iterable[str]]], ttl_seconds: int) -> None:
    """For each (workspace id, the countries it has history in): country_velocity leaves those countries
    alone, and judges every other one, for `ttl_seconds` (beat writes it again before then)."""
    connection = _redis()
    if connection is None:
        return
    # One MULTI: the script never sees a hash half written.
    pipe = connection.client.pipeline(transaction=True)
    for workspace_id, countries in known:
        key = history_key(workspace_id)
        pipe.delete(key)
        pipe.hset(key, mapping={HISTORY_KNOWN: 1, **dict.fromkeys(countries, 1)})
        pipe.expire(key, ttl_seconds)
    pipe.execute()


def history_missing(*, workspace_ids: Iterable[int]) -> list[int]:
    """The workspaces whose country history Redis does not hold (never written, expired, Redis lost)."""
    connection = _redis()
    ids = list(workspace_ids)
    if connection is None or not ids:
        return []
    pipe = connection.client.pipeline(transaction=False)
    for workspace_id in ids:
        pipe.exists(history_key(workspace_id))
    return [workspace_id for workspace_id, exists in zip(ids, pipe.execute(), strict=True) if not exists]


# The earliest time (epoch seconds) the conversion rules may run again, set after a slow run (otp.fraudrules).
RULES_PACE_KEY = "zeckta:fraud:rules:next"


def rules_may_run(*, now: datetime) -> bool:
    """Whether the conversion rules may run at `now`: not before the time a slow run set. Without Redis, or
    with Redis unreachable, always (the rules then run every interval as they did)."""
    connection = _redis()
    if connection is None:
        return True
    try:
        earliest = connection.client.get(RULES_PACE_KEY)
    except redis.RedisError:
        return True
    return earliest is None or float(earliest) <= now.timestamp()


def rules_pace(*, until: datetime, now: datetime) -> None:
    """Holds the conversion rules back until `until` (the key expires then)."""
    connection = _redis()
    seconds = (until - now).total_seconds()
    if connection is None or seconds <= 0:
        return
    try:
        connection.client.set(RULES_PACE_KEY, until.timestamp(), px=max(int(seconds * 1000), 1))
    except redis.RedisError as exc:
        logger.warning("fraud guard: could not pace the conversion rules: %s", exc)


# Where the last run of the conversion rules left off (otp.fraudrules): "<its now, epoch seconds> <the state it
# read>", expiring FRAUD_RULES_FULL_EVERY_SECONDS after the last full run (never with 0), so that the next run
# is full again.
RULES_EDGE_KEY = "zeckta:fraud:rules:edge"


@dataclass(frozen=True)
class RulesEdge:
    at: datetime  # the last run's `now`
    state: str  # the digest of what decides a verdict with no session moving (otp.fraudrules.RULES_STATE_SQL)


def rules_edge(*, now: datetime) -> RulesEdge | None:
    """Where the last run of the rules left off, or None when the next run must be full: none known (never
    written, expired, Redis lost or unreachable, no Redis), or one later than `now` (a clock moved back)."""
    connection = _redis()
    if connection is None:
        return None
    try:
        value = connection.client.get(RULES_EDGE_KEY)
    except redis.RedisError:
        return None
    if value is None:
        return None
    at, _, state = _text(value).partition(" ")
    try:
        edge = RulesEdge(at=datetime.fromtimestamp(float(at), tz=now.tzinfo), state=state)
    except ValueError:  # not what rules_edge_write writes: read as none
        return None
    return edge if edge.at <= now else None


def rules_edge_write(*, edge: RulesEdge, full: bool, ttl_seconds: float) -> None:
    """Records where a run left off; a full run starts the key's `ttl_seconds` again (none with 0), a bounded
    one keeps it (and writes nothing once it expired: the next run is full)."""
    connection = _redis()
    if connection is None:
        return
    value = f"{edge.at.timestamp()!r} {edge.state}"
    try:
        if full and ttl_seconds > 0:
            connection.client.set(RULES_EDGE_KEY, value, px=max(int(ttl_seconds * 1000), 1))
        elif full:
            connection.client.set(RULES_EDGE_KEY, value)
        else:
            connection.client.set(RULES_EDGE_KEY, value, keepttl=True, xx=True)
    except redis.RedisError as exc:
        logger.warning("fraud guard: could not record the conversion rules' edge: %s", exc)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
