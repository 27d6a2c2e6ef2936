"""The fraud guard's rules that read sessions (API.md section 13), run from beat every
FRAUD_RULES_INTERVAL_SECONDS: range_conversion, country_conversion, and the country history that
country_velocity reads from Redis.

Why here and in SQL, when the velocity rules decide in Redis on the request path (fraud.guard): conversion
is judged over hours of sessions (a session is unconverted once 120 s old and not approved), which the
database already holds and a grouped query reads at once; the request path must not pay for it, and a
block a few seconds late costs a few SMS, where range_velocity's must be exact across processes.

Each rule is one grouped query per run over every workspace whose guard is on, with the workspace's own
numbers joined in. The sessions it counts: live ones (no test key's), not to a reviewer number, not to a
safe-listed number, created after the target's last lift (the rule's counts start again from a lift), of
the rule's window. What trips is recorded by `fraud.services.fraud_block_record` (escalation, the Redis
copy, the event); a target that already has an active block of the workspace's mode is left out.

range_conversion's window is a day: read whole at every run, it cost 1.7 s at 500,000 sessions a day and grew
with the day (docs/performance.md). Between full runs it reads only the ranges whose verdict can have changed
since the last run (RANGE_CONVERSION_BOUNDED_SQL, 2.5 ms there); where the last run left off is kept in Redis
(fraud.guard.rules_edge).
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from fraud import guard
from fraud.models import FraudBlock
from fraud.services import fraud_block_record
from workspaces.models import FraudGuardMode, Workspace

logger = logging.getLogger(__name__)

# The share of one worker process (and of a database core) the conversion rules may take, however long a run
# takes: their scan grows with a day's sessions (docs/performance.md: 20-25 s a run at 330,000 sessions a day,
# against a 10 s interval), and without a pause they would run back to back, starving the housekeeping queue.
# A run slower than this share of the interval holds the next one back for (1 / share - 1) times its length.
RULES_MAX_SHARE = 0.25
# A run shorter than this never holds the next back, whatever the interval (bench/pumping.py runs the rules
# every 0.25 s on a small database, as a faster clock).
RULES_PACE_FROM_SECONDS = 1.0
# A bounded run also reads the approvals and lifts this long before the last run: one committed after that
# run's snapshot, with its time taken before (or on a web process's clock a little behind), is not missed.
RULES_EDGE_OVERLAP = timedelta(seconds=10)

# What a session of a rule's window must be to count: live, not a reviewer number's, not safe-listed.
# `s` is the session, `w` its workspace.
_COUNTED = """
    NOT s.is_test
    AND NOT EXISTS (SELECT 1 FROM otp_reviewernumber r
                     WHERE r.workspace_id = s.workspace_id AND r.dest = s.dest AND r.enabled)
    AND NOT EXISTS (SELECT 1 FROM fraud_safelistentry e
                     WHERE e.workspace_id = s.workspace_id AND starts_with(s.dest, e.prefix))
"""
# Converted (APPROVED, at any age) or unconverted (not approved once judged_after seconds old).
_JUDGED = """
    (s.status = 'APPROVED' OR s.created_at <= %(now)s - w.fraud_conversion_judged_after_seconds * interval '1 second')
"""
_RANGE = "left(s.dest, length(s.dest) - 3)"  # fraud.models.number_range

# The last lift of each target: only sessions created after it count.
_LIFTS = """
lifts AS (
    SELECT workspace_id, value, max(lifted_at) AS lifted_at
      FROM fraud_fraudblock
     WHERE scope = %(scope)s AND lifted_at IS NOT NULL
     GROUP BY workspace_id, value
)"""

_NOT_BLOCKED = """
    NOT EXISTS (SELECT 1 FROM fraud_fraudblock b
                 WHERE b.workspace_id = t.workspace_id AND b.scope = %(scope)s AND b.value = t.value
                   AND b.mode = t.mode AND b.lifted_at IS NULL AND b.ends_at > %(now)s)
"""

# range_conversion: in its window (24 h), at least N judged sessions of one range, at most P % converted.
# The window's sessions are found by otp_session_created_idx (created_at), bounded by the widest window of
# any guarded workspace, then each workspace's own window applies.
RANGE_CONVERSION_SQL = f"""
WITH {_LIFTS},
targets AS (
    SELECT w.id AS workspace_id, w.fraud_guard_mode AS mode, {_RANGE} AS value,
           count(*) AS sessions, count(*) FILTER (WHERE s.status = 'APPROVED') AS converted,
           count(DISTINCT s.dest) AS numbers
      FROM otp_otpsession s
      JOIN workspaces_workspace w ON w.id = s.workspace_id
      LEFT JOIN lifts l ON l.workspace_id = s.workspace_id AND l.value = {_RANGE}
     WHERE s.created_at > %(now)s - (SELECT max(fraud_range_conversion_window_seconds) FROM workspaces_workspace
                                      WHERE fraud_guard_mode <> 'off') * interval '1 second'
       AND s.created_at > %(now)s - w.fraud_range_conversion_window_seconds * interval '1 second'
       AND w.fraud_guard_mode <> 'off'
       AND (l.lifted_at IS NULL OR s.created_at > l.lifted_at)
       AND {_JUDGED} AND {_COUNTED}
     GROUP BY w.id, {_RANGE}
    HAVING count(*) >= w.fraud_range_conversion_min_sessions
       AND count(*) FILTER (WHERE s.status = 'APPROVED') * 100 <= w.fraud_range_conversion_max_percent * count(*)
)
SELECT t.workspace_id, t.value, t.sessions, t.converted, t.numbers FROM targets t WHERE {_NOT_BLOCKED}
"""

# range_conversion, bounded: the same verdicts for the ranges whose counts can have changed since the last run
# at `last`, read from a slice of sessions instead of the whole window. A range's verdict changes only when
# - a session becomes judged: unconverted by age (created in (last - judged_after, now - judged_after]), or
#   converted before that age (created after last - judged_after, approved since the last run, less
#   RULES_EDGE_OVERLAP: an approval committed after that run's snapshot; one missed all the same is read when
#   the session comes of age); an approval of a session judged unconverted already raises the range's
#   conversion, which never trips it;
# - a session leaves the window (created in (last - window, now - window]);
# - a block of the range ends or is lifted since the last run (the range may trip again);
# - or anything of RULES_STATE_SQL changes (a workspace's numbers or mode, the safe list, the reviewer
#   numbers): then the run is full (fraud_rules_run).
# The slices are read per distinct judged_after and window of the guarded workspaces (one each with the
# defaults) by otp_session_created_idx; each candidate range's window by otp_session_dest_window_idx
# (workspace, dest, created_at): the range's numbers are the dests between range || '000' and range || '999'
# (an index range in any collation that orders digits as digits: E.164 is '+' and digits), rechecked exactly.
RANGE_CONVERSION_BOUNDED_SQL = f"""
WITH guarded AS (
    SELECT id, fraud_guard_mode AS mode,
           fraud_conversion_judged_after_seconds * interval '1 second' AS judged_after,
           fraud_range_conversion_window_seconds * interval '1 second' AS span,
           fraud_range_conversion_min_sessions AS min_sessions,
           fraud_range_conversion_max_percent AS max_percent
      FROM workspaces_workspace
     WHERE fraud_guard_mode <> 'off'
),
candidates AS (
    SELECT s.workspace_id, {_RANGE} AS value
      FROM (SELECT DISTINCT judged_after FROM guarded) j
      JOIN otp_otpsession s ON s.created_at > %(last)s - j.judged_after AND s.created_at <= %(now)s
      JOIN guarded g ON g.id = s.workspace_id AND g.judged_after = j.judged_after
     WHERE NOT s.is_test
       AND (s.created_at <= %(now)s - j.judged_after
            OR (s.status = 'APPROVED' AND s.verified_at > %(last)s - %(overlap)s))
    UNION
    SELECT s.workspace_id, {_RANGE}
      FROM (SELECT DISTINCT span FROM guarded) d
      JOIN otp_otpsession s ON s.created_at > %(last)s - d.span AND s.created_at <= %(now)s - d.span
      JOIN guarded g ON g.id = s.workspace_id AND g.span = d.span
     WHERE NOT s.is_test
    UNION
    SELECT b.workspace_id, b.value
      FROM fraud_fraudblock b
      JOIN guarded g ON g.id = b.workspace_id
     WHERE b.scope = %(scope)s
       AND ((b.ends_at > %(last)s - %(overlap)s AND b.ends_at <= %(now)s) OR b.lifted_at > %(last)s - %(overlap)s)
),
{_LIFTS.strip()},
targets AS (
    SELECT c.workspace_id, g.mode, c.value, k.sessions, k.converted, k.numbers
      FROM candidates c
      JOIN guarded g ON g.id = c.workspace_id
      JOIN workspaces_workspace w ON w.id = c.workspace_id
      LEFT JOIN lifts l ON l.workspace_id = c.workspace_id AND l.value = c.value
     CROSS JOIN LATERAL (
            SELECT count(*) AS sessions, count(*) FILTER (WHERE s.status = 'APPROVED') AS converted,
                   count(DISTINCT s.dest) AS numbers
              FROM otp_otpsession s
             WHERE s.workspace_id = c.workspace_id
               AND s.dest >= c.value || '000' AND s.dest <= c.value || '999' AND {_RANGE} = c.value
               AND s.created_at > %(now)s - (SELECT max(span) FROM guarded)
               AND s.created_at > %(now)s - g.span
               AND (l.lifted_at IS NULL OR s.created_at > l.lifted_at)
               AND {_JUDGED} AND {_COUNTED}
           ) k
     WHERE k.sessions >= g.min_sessions AND k.converted * 100 <= g.max_percent * k.sessions
)
SELECT t.workspace_id, t.value, t.sessions, t.converted, t.numbers FROM targets t WHERE {_NOT_BLOCKED}
"""

# What can change a range's verdict with no session moving, as one digest: the guarded workspaces' modes
# and numbers, the safe list, the enabled reviewer numbers. A bounded run reads it first; when it differs
# from the last run's, the run is full. Small tables: a workspace holds a few entries of each.
RULES_STATE_SQL = """
SELECT md5(coalesce(string_agg(row, ';' ORDER BY row), ''))
  FROM (SELECT concat_ws(':', 'w', id, fraud_guard_mode, fraud_conversion_judged_after_seconds,
                         fraud_range_conversion_window_seconds, fraud_range_conversion_min_sessions,
                         fraud_range_conversion_max_percent) AS row
          FROM workspaces_workspace WHERE fraud_guard_mode <> 'off'
        UNION ALL
        SELECT concat_ws(':', 's', workspace_id, prefix) FROM fraud_safelistentry
        UNION ALL
        SELECT concat_ws(':', 'r', workspace_id, dest) FROM otp_reviewernumber WHERE enabled) state
"""

# country_conversion: in its window (1 h), at least N judged sessions of one country, at most P % converted,
# while over the baseline before the window (7 days) the country converted at least B % or had fewer than
# M judged sessions. The baseline is read (LATERAL) only for the few countries that pass the first test,
# through their SMS by otp_sms_country_window_idx (workspace, country, created_at): sessions have no such
# index, and one more on the table every request writes would cost each request for a rare read. The
# baseline does not start at a lift: it is the "before".
COUNTRY_CONVERSION_SQL = f"""
WITH {_LIFTS},
targets AS (
    SELECT w.id AS workspace_id, w.fraud_guard_mode AS mode, s.country AS value,
           count(*) AS sessions, count(*) FILTER (WHERE s.status = 'APPROVED') AS converted,
           count(DISTINCT s.dest) AS numbers,
           %(now)s - w.fraud_country_conversion_window_seconds * interval '1 second' AS since,
           w.fraud_country_conversion_baseline_seconds AS baseline_seconds,
           w.fraud_country_conversion_baseline_percent AS baseline_percent,
           w.fraud_country_conversion_baseline_min_sessions AS baseline_min
      FROM otp_otpsession s
      JOIN workspaces_workspace w ON w.id = s.workspace_id
      LEFT JOIN lifts l ON l.workspace_id = s.workspace_id AND l.value = s.country
     WHERE s.created_at > %(now)s - (SELECT max(fraud_country_conversion_window_seconds) FROM workspaces_workspace
                                      WHERE fraud_guard_mode <> 'off') * interval '1 second'
       AND s.created_at > %(now)s - w.fraud_country_conversion_window_seconds * interval '1 second'
       AND w.fraud_guard_mode <> 'off'
       AND s.country <> ''
       AND (l.lifted_at IS NULL OR s.created_at > l.lifted_at)
       AND {_JUDGED} AND {_COUNTED}
     GROUP BY w.id, s.country
    HAVING count(*) >= w.fraud_country_conversion_min_sessions
       AND count(*) FILTER (WHERE s.status = 'APPROVED') * 100 <= w.fraud_country_conversion_max_percent * count(*)
)
SELECT t.workspace_id, t.value, t.sessions, t.converted, t.numbers
  FROM targets t
 CROSS JOIN LATERAL (
        SELECT count(DISTINCT s.id) AS sessions,
               count(DISTINCT s.id) FILTER (WHERE s.status = 'APPROVED') AS converted
          FROM otp_smsmessage m
          JOIN otp_otpsession s ON s.id = m.session_id
          JOIN workspaces_workspace w ON w.id = s.workspace_id
         WHERE m.workspace_id = t.workspace_id AND m.country = t.value
           AND m.created_at > t.since - t.baseline_seconds * interval '1 second' AND m.created_at <= t.since
           AND s.created_at > t.since - t.baseline_seconds * interval '1 second' AND s.created_at <= t.since
           AND {_JUDGED} AND {_COUNTED}
       ) baseline
 WHERE (baseline.sessions < t.baseline_min OR baseline.converted * 100 >= t.baseline_percent * baseline.sessions)
   AND {_NOT_BLOCKED}
"""

# The countries each workspace sent at least N live OTP SMS to in the history (7 days) before the
# country_velocity window, for the workspaces Redis holds no history of: otp_sms_country_window_idx
# (workspace, country, created_at).
COUNTRY_HISTORY_SQL = """
SELECT m.workspace_id, m.country
  FROM otp_smsmessage m
  JOIN workspaces_workspace w ON w.id = m.workspace_id
 WHERE m.workspace_id = ANY(%(workspaces)s)
   AND NOT m.is_test AND m.country <> ''
   AND m.created_at > %(now)s - (w.fraud_country_velocity_window_seconds + w.fraud_country_velocity_history_seconds)
                                * interval '1 second'
   AND m.created_at <= %(now)s - w.fraud_country_velocity_window_seconds * interval '1 second'
 GROUP BY m.workspace_id, m.country, w.fraud_country_velocity_history_sms
HAVING count(*) >= w.fraud_country_velocity_history_sms
"""


@dataclass(frozen=True)
class _Tripped:
    workspace_id: int
    value: str
    sessions: int
    converted: int
    numbers: int


def _rows(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with transaction.atomic(), connection.cursor() as cursor:
        if sql is RANGE_CONVERSION_BOUNDED_SQL:
            # The planner cannot know how few sessions a slice holds (its bounds depend on the workspaces'
            # settings) and estimates a third of the table: enough to compile the statement to machine code
            # (JIT), 1.2 s for a statement that runs in milliseconds (docs/performance.md). For it only.
            cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        return cursor.fetchall()


def fraud_rules_paced_run(*, now: datetime) -> int | None:
    """Beat's run of the rules (`fraud_rules_run`), unless a slow run before it holds it back (RULES_MAX_SHARE):
    then None, and nothing is read. A block then comes a little later than the interval says, which costs a
    few SMS; a database kept busy by the rules would cost every request."""
    if not guard.rules_may_run(now=now):
        return None
    started = time.monotonic()
    recorded = fraud_rules_run(now=now)
    took = time.monotonic() - started
    if took > max(settings.FRAUD_RULES_INTERVAL_SECONDS * RULES_MAX_SHARE, RULES_PACE_FROM_SECONDS):
        finished = now + timedelta(seconds=took)
        pause = timedelta(seconds=took * (1 / RULES_MAX_SHARE - 1))
        guard.rules_pace(until=finished + pause, now=finished)
        logger.warning(
            "fraud rules took %.1f s (interval %.0f s): the next run in %.0f s at the earliest",
            took,
            settings.FRAUD_RULES_INTERVAL_SECONDS,
            pause.total_seconds(),
        )
    return recorded


def fraud_rules_run(*, now: datetime) -> int:
    """One run of beat's fraud work: the country history where Redis lacks it, then each conversion rule.
    range_conversion reads only the ranges whose counts can have changed since the last run
    (RANGE_CONVERSION_BOUNDED_SQL), unless the run must be full (`_range_rule_since`). Returns the blocks
    recorded."""
    country_history_refresh(now=now)
    state = _rows(RULES_STATE_SQL, {})[0][0]
    since = _range_rule_since(now=now, state=state)
    recorded = 0
    for rule, scope, sql, params in (
        (
            FraudBlock.Rule.RANGE_CONVERSION,
            FraudBlock.Scope.RANGE,
            RANGE_CONVERSION_SQL if since is None else RANGE_CONVERSION_BOUNDED_SQL,
            {"last": since, "overlap": RULES_EDGE_OVERLAP},
        ),
        (FraudBlock.Rule.COUNTRY_CONVERSION, FraudBlock.Scope.COUNTRY, COUNTRY_CONVERSION_SQL, {}),
    ):
        tripped = [_Tripped(*row) for row in _rows(sql, {"now": now, "scope": scope.value, **params})]
        workspaces = Workspace.objects.in_bulk({trip.workspace_id for trip in tripped}) if tripped else {}
        for trip in tripped:
            workspace = workspaces[trip.workspace_id]
            block = fraud_block_record(
                workspace=workspace,
                scope=scope.value,
                value=trip.value,
                rule=rule.value,
                mode=workspace.fraud_guard_mode,
                evidence={"sessions": trip.sessions, "converted": trip.converted, "numbers": trip.numbers},
                now=now,
            )
            recorded += block is not None
    guard.rules_edge_write(
        edge=guard.RulesEdge(at=now, state=state),
        full=since is None,
        ttl_seconds=settings.FRAUD_RULES_FULL_EVERY_SECONDS,
    )
    return recorded


def _range_rule_since(*, now: datetime, state: str) -> datetime | None:
    """The last run's `now`, from which this run of range_conversion may read only what moved; None when it
    must read the whole window: the first run (or Redis lost the edge), every FRAUD_RULES_FULL_EVERY_SECONDS
    (the edge expires), after a change of RULES_STATE_SQL's state, or when the clock moved back."""
    edge = guard.rules_edge(now=now)
    if edge is None or edge.state != state:
        return None
    return edge.at


def country_history_refresh(*, now: datetime) -> int:
    """Writes into Redis, for each guarded workspace whose history it does not hold (never written, expired
    after FRAUD_HISTORY_REFRESH_SECONDS, Redis lost), the countries country_velocity must leave alone.
    Returns the workspaces written."""
    guarded = Workspace.objects.exclude(fraud_guard_mode=FraudGuardMode.OFF).values_list("pk", flat=True)
    missing = guard.history_missing(workspace_ids=guarded)
    if not missing:
        return 0
    countries: dict[int, list[str]] = {workspace_id: [] for workspace_id in missing}
    for workspace_id, country in _rows(COUNTRY_HISTORY_SQL, {"now": now, "workspaces": missing}):
        countries[workspace_id].append(country)
    guard.history_write(known=countries.items(), ttl_seconds=settings.FRAUD_HISTORY_REFRESH_SECONDS)
    return len(missing)
