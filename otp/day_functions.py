"""The database functions of one day: `otp_request()` and `otp_verify()` with their tables' daily partitions
named (PostgreSQL with the per-send tables by day, otp.partitions).

Why: a PL/pgSQL function caches a generic plan of each statement. On the partitioned parents PostgreSQL 15
prunes such a plan's partitions only when it runs, after locking every one of them: ~40 days of four tables
made a new request take 130 relation locks instead of 12 (past a backend's 16 fast-path slots, so concurrent
requests queue on the shared lock table), and its bounds are STABLE expressions (`p_now - interval ...`), so
no plan can prune them earlier. A statement that names its partitions locks only those, and its cached plan
costs what the plain table's does (docs/performance.md, "Daily partitions: what each hot statement plans
and locks").

So for each day D that has its partitions, `otp_request_pD()` reads D and D-1 (a request at D looks back a day
at most: a session's validity, and every window no longer, which the caller checks) and `otp_verify_pD()`
reads D alone (a verify looks up its session by the UUIDv7 time of its id, a minute either side, which the
caller checks lies within D). They are made from the installed `otp_request()` and `otp_verify()` (their one
home stays otp/sql/, installed by the migrations), by the rewrites of `_day_text`: whatever else changes in
those texts, the day's copies follow at the next sync. A statement shape the rewrites do not know leaves the
day without functions (logged), and the caller then calls the parent's, which is always right.

`day_functions_sync()` creates what is missing or stale and drops the functions of days whose partitions
are gone; it runs with every `partitions_ensure()` (hourly, beat), after the purge, and from the migrations
that change the functions. The purge never drops yesterday's or today's partitions (otp.partitions), so the
functions callers use are never dropped under them.
"""

import hashlib
import logging
import re
import time
import uuid
from datetime import UTC, date, datetime, timedelta

from django.db import DatabaseError, connection, transaction

from otp.partitions import (
    CLOCK_SKEW,
    ID_TIME_MARGIN,
    MAX_VALIDITY,
    SESSIONS,
    SMS,
    WRONG_CODES,
    midnight,
    partition_name,
)
from zeckta.db import uuid7_time

logger = logging.getLogger(__name__)

# Which partitions each function reads, by days before its own.
REQUEST = "otp_request"
VERIFY = "otp_verify"
_READS: dict[str, dict[str, tuple[int, ...]]] = {
    REQUEST: {SESSIONS.table: (0, 1), SMS.table: (0, 1), WRONG_CODES.table: (0, 1)},
    VERIFY: {SESSIONS.table: (0,)},
}
# Part of each made function's digest: change it with `_day_text`'s rewrites, so that the next sync remakes them.
REWRITE_VERSION = 1
# A day's functions are looked for again this long after they were missing (beat makes them hours ahead).
ABSENT_RECHECK_SECONDS = 60.0

_TABLE = r"(otp_otpsession|otp_smsmessage|otp_wrongcode|otp_smsattempt)\b(?!_p\d)"
# `FROM <table> [alias]`: the alias is any word that is not the next clause's keyword.
_FROM = re.compile(
    rf"\bFROM\s+{_TABLE}(?:\s+(?:AS\s+)?(?!(?:WHERE|ORDER|GROUP|LIMIT|OFFSET|FOR|JOIN|ON|USING|WINDOW)\b)([a-z_]\w*))?",
    re.IGNORECASE,
)
_UPDATE = re.compile(rf"\bUPDATE\s+{_TABLE}(.*?);", re.IGNORECASE | re.DOTALL)
_DELETE = re.compile(rf"\bDELETE\s+FROM\s+{_TABLE}", re.IGNORECASE)
_INSERT = re.compile(rf"\bINSERT\s+INTO\s+{_TABLE}", re.IGNORECASE)
_ANY = re.compile(rf"\b{_TABLE}", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")
_HEADER = re.compile(r"^(CREATE OR REPLACE FUNCTION [\w.]*?)\b(otp_request|otp_verify)\(")
_DAY_NAME = re.compile(r"^(otp_request|otp_verify)_p(\d{8})$")


class UnknownStatement(ValueError):
    """The function names a partitioned table in a statement `_day_text` cannot rewrite."""


def _day_text(definition: str, *, function: str, day: date, columns: dict[str, str]) -> str:
    """`definition` (pg_get_functiondef of the parent's function) rewritten for `day`: named `<function>_pD`,
    each read of a partitioned table from the partitions `_READS` gives it (one by name; two as a UNION ALL
    of their columns, which the planner flattens into one append of both: the same indexes, merged in
    order), each UPDATE on the day's partition, then on the day before's if it found no row (the row it
    looks for is in one of them). INSERTs stay on the parent: they lock only the partition the row goes to."""
    reads = _READS[function]

    def days_of(table: str) -> list[str]:
        if table not in reads:
            raise UnknownStatement(f"{function} reads {table}, which has no days to read here")
        return [partition_name(table, day - timedelta(days=back)) for back in reads[table]]

    def read(match: re.Match) -> str:
        table, alias = match.group(1).lower(), match.group(2)
        names = days_of(table)
        if len(names) == 1:
            return f"FROM {names[0]}" + (f" {alias}" if alias else "")
        union = " UNION ALL ".join(f"SELECT {columns[table]} FROM {name}" for name in names)
        return f"FROM ({union}) {alias or table + '_days'}"

    def update(match: re.Match) -> str:
        table, rest = match.group(1).lower(), match.group(2)
        first, *others = days_of(table)
        text = f"UPDATE {first}{rest};"
        for name in others:
            text += f"\n    IF NOT FOUND THEN UPDATE {name}{rest}; END IF;"
        return text

    header, body = _renamed(definition, day=day).split("$function$", 1)
    if _DELETE.search(body):
        raise UnknownStatement(f"{function} deletes from a partitioned table")
    body = _UPDATE.sub(update, _FROM.sub(read, body))
    leftover = _ANY.findall(_INSERT.sub("", _COMMENT.sub("", body)))
    if leftover:
        raise UnknownStatement(f"{function} names {', '.join(sorted(set(leftover)))} where no rewrite applies")
    return header + "$function$" + body


def _renamed(definition: str, *, day: date) -> str:
    """The parent's function, unchanged but for its name: what a day gets when its rewrite fails (right,
    only not cheaper)."""
    text, count = _HEADER.subn(rf"\1\2_p{day:%Y%m%d}(", definition.lstrip(), count=1)
    if count != 1:
        raise ValueError("not a definition of otp_request or otp_verify")
    return text


def _columns(cursor) -> dict[str, str]:
    """Each partitioned parent's columns, in order, quoted: what a UNION ALL of its days selects."""
    cursor.execute(
        "SELECT c.relname, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " WHERE c.relname = ANY(%s) AND c.relkind = 'p' AND a.attnum > 0 AND NOT a.attisdropped"
        " GROUP BY c.relname",
        [[SESSIONS.table, SMS.table, WRONG_CODES.table]],
    )
    return dict(cursor.fetchall())


def _create(cursor, definition: str, *, function: str, day: date, columns: dict[str, str]) -> None:
    """Creates (or replaces) `function`'s copy for `day`: rewritten to name the day's partitions, or, when the
    rewrite does not apply or PostgreSQL refuses its text, the parent's statements under the day's name (so
    that a caller which found the function never finds it gone)."""
    try:
        text = _day_text(definition, function=function, day=day, columns=columns)
        with transaction.atomic():
            cursor.execute(text)
        return
    except (UnknownStatement, DatabaseError) as error:
        logger.warning("%s of %s runs the parent's statements (no partition named): %s", function, day, error)
    cursor.execute(_renamed(definition, day=day))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def day_functions_sync() -> tuple[int, int]:
    """Creates (or replaces, when stale) each day's functions whose partitions exist, drops those of days
    whose partitions went; returns (made, dropped). A no-op on plain tables and SQLite."""
    if connection.vendor != "postgresql":
        return 0, 0
    with connection.cursor() as cursor:
        columns = _columns(cursor)
        if len(columns) < 3:
            return 0, 0  # plain tables (otp.partitions.partitioned)
        cursor.execute("SELECT relname FROM pg_class WHERE relname ~ '^otp_[a-z]+_p[0-9]{8}$' AND relkind = 'r'")
        existing = {name for (name,) in cursor.fetchall()}
        # Each made function carries, as its comment, the digest of what its text was made from.
        cursor.execute(
            "SELECT p.proname, obj_description(p.oid, 'pg_proc'), pg_get_function_identity_arguments(p.oid)"
            " FROM pg_proc p WHERE p.proname ~ '^otp_(request|verify)_p[0-9]{8}$'"
        )
        made_before: dict[str, str] = {}
        arguments_before: dict[str, list[str]] = {}
        for name, digest, arguments in cursor.fetchall():
            made_before[name] = digest
            arguments_before.setdefault(name, []).append(arguments)
        definitions, arguments = {}, {}
        for function in (REQUEST, VERIFY):
            cursor.execute(
                "SELECT pg_get_functiondef(%s::regproc), pg_get_function_identity_arguments(%s::regproc)",
                [function, function],
            )
            definitions[function], arguments[function] = cursor.fetchone()
        days = {datetime.strptime(name[-8:], "%Y%m%d").date() for name in existing}
        made, wanted = 0, set()
        for day in sorted(days):
            for function, reads in _READS.items():
                needed = {partition_name(t, day - timedelta(days=back)) for t, backs in reads.items() for back in backs}
                if not needed <= existing:
                    continue
                name = f"{function}_p{day:%Y%m%d}"
                wanted.add(name)
                # What the day's text is made from: the same parent, columns and rewrite make the same text.
                digest = _digest(f"{REWRITE_VERSION}\n{definitions[function]}\n{day}\n{sorted(columns.items())}")
                if made_before.get(name) == digest:
                    continue
                # One transaction: callers see the old function or the new, never none.
                with transaction.atomic():
                    for old in arguments_before.get(name, []):
                        if old != arguments[function]:  # the parent's parameters changed: not replaceable
                            cursor.execute(f"DROP FUNCTION {name}({old})")
                    _create(cursor, definitions[function], function=function, day=day, columns=columns)
                    cursor.execute(f"COMMENT ON FUNCTION {name} IS '{digest}'")
                made += 1
        dropped = 0
        for name in sorted(set(made_before) - wanted):
            for old in arguments_before[name]:
                cursor.execute(f"DROP FUNCTION IF EXISTS {name}({old})")
            dropped += 1
    if made or dropped:
        logger.info("day functions: %s made, %s dropped", made, dropped)
    return made, dropped


# This process's knowledge of which days have their functions: {day: True} once found (they stay while the
# day is today or yesterday), {day: monotonic time of the check} while missing.
_found: dict[date, bool | float] = {}


def _has_functions(day: date) -> bool:
    known = _found.get(day)
    if known is True:
        return True
    if known is not None and time.monotonic() - known < ABSENT_RECHECK_SECONDS:
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_proc WHERE proname IN (%s, %s)",
            [f"{REQUEST}_p{day:%Y%m%d}", f"{VERIFY}_p{day:%Y%m%d}"],
        )
        present = cursor.fetchone()[0] == 2
    _found[day] = True if present else time.monotonic()
    return present


def request_function(*, now: datetime, windows: tuple[timedelta, ...]) -> str:
    """The function a request at `now` calls: its day's when the day has it, `now` is not in the last minute
    of the day (a row may be a minute ahead of now: the clocks) and no window looks back more than a day;
    else the parent's."""
    day = now.astimezone(UTC).date()
    if now + CLOCK_SKEW >= midnight(day + timedelta(days=1)) or any(w > MAX_VALIDITY for w in windows):
        return REQUEST
    if connection.vendor != "postgresql" or not _has_functions(day):
        return REQUEST
    return f"{REQUEST}_p{day:%Y%m%d}"


def verify_function(*, session_id: uuid.UUID, now: datetime) -> str:
    """The function a verify of `session_id` calls: the day of its id's time when the margin around that
    time stays within the day and the day is today or yesterday (an older session is past its validity, and
    its day may be purged: the parent's answers); else the parent's."""
    at = uuid7_time(session_id)
    if at is None:
        return VERIFY
    day = at.date()
    if at - ID_TIME_MARGIN < midnight(day) or at + ID_TIME_MARGIN >= midnight(day + timedelta(days=1)):
        return VERIFY
    if not timedelta(0) <= now.astimezone(UTC).date() - day <= timedelta(days=1):
        return VERIFY
    if connection.vendor != "postgresql" or not _has_functions(day):
        return VERIFY
    return f"{VERIFY}_p{day:%Y%m%d}"
