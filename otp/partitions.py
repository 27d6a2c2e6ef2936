"""The per-send tables by day on PostgreSQL (docs/operations.md, PostgreSQL at scale).

`otp_otpsession`, `otp_smsmessage`, `otp_smsattempt` and `otp_wrongcode` grow with every OTP: at 1,000 OTP/s,
86 million sessions a day. On PostgreSQL each is range-partitioned on its creation time (`created_at`;
`started_at` for attempts), one partition a UTC day, named `<table>_p<YYYYMMDD>`. So:

- the retention purge drops whole partitions (`partitions_purge`): milliseconds, constant memory, no dead
  tuple, however many rows a day held;
- beat creates the partitions ahead (`partitions_ensure`, OTP_PARTITIONS_AHEAD_DAYS days), since a row for a
  day without a partition is refused, and each day's functions with them (otp.day_functions);
- each hot statement names the creation time it may have (a session's validity is at most 86,400 s; a
  session id is a UUIDv7, whose first 48 bits are its creation time in ms), so PostgreSQL reads the one or
  two partitions that can hold it, not all of them.

PostgreSQL wants the partition key in every unique index: the primary keys are (id, created_at) in the
database (still `id` for Django), `public_id` is unique with its creation time, and the one pending session
per destination and purpose is a unique index of each partition (one day): the request's advisory lock on
the destination is what keeps two pending sessions from different days apart, and the request looks back
over a day only (`MAX_VALIDITY`). Foreign keys INTO these tables (SMS -> session, attempt -> SMS, test inbox ->
session) exist in Python only (db_constraint=False); Django's collector still cascades a deleted row, and
the purge drops a day of SMS with the day of sessions they belong to. Nor are there keys OUT of them (to
workspaces, sender names, routes): each would cost every insert a row lock on the hot workspace row, and
each partition's DROP a lock on the referenced tables (blocking a prepaid workspace's balance updates);
Django's collector keeps deleting what hangs off a deleted workspace, and protecting a sender name in use.

SQLite (make run, the tests of other apps' SQLite paths) keeps plain tables: every function here is a no-op
there, and the purge deletes rows as it always did.
"""

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import IntegrityError, OperationalError, ProgrammingError, connection, transaction
from psycopg import errors as psycopg_errors

from zeckta.db import uuid7_time

logger = logging.getLogger(__name__)

# A session's validity is at most this long (workspaces_workspace_validity_range), a relayed SMS's deadline
# much less: nothing older can still be pending or sendable.
MAX_VALIDITY = timedelta(seconds=86_400)
# How far the web and worker machines' clocks may disagree (NTP keeps them well within): a row is never
# looked for further ahead of now than this, which keeps the days ahead out of every hot statement.
CLOCK_SKEW = timedelta(minutes=1)
# How far a session's creation time may lie from the time in its UUIDv7 (both are taken from the same clock
# reading, otp.services; the margin only covers the millisecond the UUID truncates).
ID_TIME_MARGIN = timedelta(minutes=1)
# A partition's DROP waits at most this long for its lock (a long report reading the table): it is tried
# again by the next hourly purge instead of holding the requests queued behind it.
DROP_LOCK_TIMEOUT = "2s"


@dataclass(frozen=True)
class Partitioned:
    table: str
    key: str  # the creation-time column partitions are ranged on
    # Unique indexes that cannot include the key: one per partition, "<columns> [WHERE ...]".
    local_unique: tuple[str, ...] = ()


SESSIONS = Partitioned(
    "otp_otpsession",
    "created_at",
    local_unique=("(workspace_id, dest, purpose, is_test) WHERE status = 'PENDING'",),
)
SMS = Partitioned("otp_smsmessage", "created_at")
ATTEMPTS = Partitioned("otp_smsattempt", "started_at")
WRONG_CODES = Partitioned("otp_wrongcode", "created_at")
TABLES = (SESSIONS, SMS, ATTEMPTS, WRONG_CODES)

_NAME = re.compile(r"_p(\d{8})$")
_BOUND = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")


def created_near(public_id: uuid.UUID | str) -> dict[str, datetime]:
    """ORM filters on `created_at` around the time a UUIDv7 id carries (otp.services makes a session's id
    and creation time from one clock reading), so that a lookup by the id reads its day's partition; none
    for an id of another version (made before UUIDv7: looked up everywhere)."""
    if not isinstance(public_id, uuid.UUID):
        try:
            public_id = uuid.UUID(str(public_id))
        except ValueError:
            return {}
    at = uuid7_time(public_id)
    if at is None:
        return {}
    return {"created_at__gte": at - ID_TIME_MARGIN, "created_at__lt": at + ID_TIME_MARGIN}


def partitioned() -> bool:
    """Whether this database keeps the per-send tables by day (PostgreSQL after migration otp 0021)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s AND relkind = 'p'", [SESSIONS.table])
        return cursor.fetchone() is not None


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def midnight(day: date) -> datetime:
    """The start of a UTC day: where its partitions begin."""
    return datetime.combine(day, time(), tzinfo=UTC)


def _create(cursor, spec: Partitioned, day: date, existing: set[str]) -> bool:
    """Creates the day's partition of `spec` with its local unique indexes; False when it existed."""
    name = partition_name(spec.table, day)
    if name in existing:
        return False
    start, end = midnight(day), midnight(day + timedelta(days=1))
    try:
        # The table and its indexes together, or neither: another process never finds the one without the others.
        with transaction.atomic():
            cursor.execute(
                f"CREATE TABLE {name} PARTITION OF {spec.table} FOR VALUES FROM (%s) TO (%s)",
                [start.isoformat(), end.isoformat()],
            )
            for number, definition in enumerate(spec.local_unique):
                cursor.execute(f"CREATE UNIQUE INDEX {name}_u{number} ON {name} {definition}")
    except (ProgrammingError, IntegrityError) as exc:
        # Made meanwhile by another process since `existing` was read: beat's hourly run and a deploy's migrate,
        # or the tests' flush and a worker's beat. The loser sees DuplicateTable, or a unique violation in the
        # catalog when both created at once.
        if not isinstance(exc.__cause__, (psycopg_errors.DuplicateTable, psycopg_errors.UniqueViolation)):
            raise
        return False
    return True


def partitions_ensure(*, now: datetime, ahead_days: int, back_days: int = 0) -> int:
    """Creates the missing daily partitions from `back_days` before `now`'s day to `ahead_days` after it;
    returns how many. Beat runs it hourly (a missed day leaves `ahead_days` of margin)."""
    if not partitioned():
        return 0
    today = now.astimezone(UTC).date()
    created = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relname ~ '^otp_[a-z]+_p[0-9]{8}$' AND relkind = 'r'")
        existing = {name for (name,) in cursor.fetchall()}
        for offset in range(-back_days, ahead_days + 1):
            for spec in TABLES:
                created += _create(cursor, spec, today + timedelta(days=offset), existing)
    if created:
        logger.info("created %s daily partitions", created)
    return created


def partitions_of(table: str) -> list[tuple[str, datetime | None, datetime]]:
    """(name, lower bound or None for MINVALUE, upper bound) of each partition of `table`, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [table],
        )
        rows = cursor.fetchall()
    bounds = []
    for name, expression in rows:
        match = _BOUND.search(expression)
        if match is None:
            continue  # a DEFAULT partition: never made here
        lower, upper = (_timestamp(value) for value in match.groups())
        assert upper is not None
        bounds.append((name, lower, upper))
    return sorted(bounds, key=lambda row: row[2])


def _timestamp(literal: str) -> datetime | None:
    if literal == "MINVALUE":
        return None
    text = literal.strip("'")
    if re.search(r"[+-]\d\d$", text):
        text += ":00"
    return datetime.fromisoformat(text)


def partitions_drop_before(spec: Partitioned, cutoff: datetime) -> int:
    """Drops the partitions of `spec` that hold nothing at or after `cutoff`; returns how many. A partition
    that also holds newer rows stays whole until its last hour passes: rows live up to a day longer than
    `cutoff` says."""
    # Never yesterday's or today's: a request reads both, through functions that name them (otp.day_functions).
    cutoff = min(cutoff, midnight(datetime.now(UTC).date() - timedelta(days=1)))
    dropped = 0
    for name, _lower, upper in partitions_of(spec.table):
        if upper > cutoff:
            break
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # The DROP locks the parent too: wait a little for a long reader, else try again next time.
                cursor.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                cursor.execute(f"DROP TABLE {name}")
            dropped += 1
        except OperationalError:  # the lock time-out: the next purge drops it
            logger.warning("partition %s not dropped (lock time-out): the next purge tries again", name)
    return dropped
