"""Database helpers shared by the apps."""

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Generic, TypeVar, cast

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class Page(Generic[M]):
    """One page of a list, and the whole list's length."""

    items: list[M]
    total: int


def page_of(rows: models.QuerySet[M], *, page: int, page_size: int) -> Page[M]:
    """One page (1-based) of `rows`, whose order must be total so that pages never overlap, and their
    count: two queries (one past the last page)."""
    total = rows.count()
    offset = (page - 1) * page_size
    # Checked in Python: an absurd page number never becomes an OFFSET that PostgreSQL refuses.
    items = list(rows[offset : offset + page_size]) if offset < total else []
    return Page(items=items, total=total)


def uuid7(at: datetime | None = None) -> uuid.UUID:
    """An RFC 9562 version 7 UUID: 48 bits of Unix milliseconds, then 74 random bits.

    For ids that are indexed and written all day (sessions, SMS): new ones land at the end of their
    unique index instead of on a random page of it, which keeps inserts cheap when the table holds
    millions of rows. 74 random bits leave them as unguessable as any id needs to be here (a session
    id alone opens nothing: every call also needs the workspace's key).

    `at`: the time to put in it, for a row whose creation time is `at` (a lookup by the id then knows which
    daily partition to read, otp.partitions); now by default.
    """
    milliseconds = time.time_ns() // 1_000_000 if at is None else int(at.timestamp() * 1000)
    value = milliseconds << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return uuid.UUID(int=value)


def uuid7_time(value: uuid.UUID) -> datetime | None:
    """The time a version 7 UUID carries (`uuid7`'s `at`, to the millisecond); None for another version."""
    if value.version != 7:
        return None
    return datetime.fromtimestamp((value.int >> 80) / 1000, tz=UTC)


@contextmanager
def server_bound_cursor() -> Iterator[Any]:
    """A cursor whose parameters travel apart from its statement (psycopg 3's server-side binding), for the
    hot paths' function calls of many parameters. Django's cursors quote every value into the SQL text, which
    PostgreSQL then parses back: for a request's 36 arguments that cost 0.14 ms of Python and 0.15 ms of
    backend CPU a call, against 0.09 and 0.09 bound (docs/performance.md). Not the connection's default:
    some statements take no parameters PostgreSQL can bind (DDL, such as a partition's bounds). Queries
    through it are logged and counted as any other (Django's own wrappers)."""
    with connection.cursor() as cursor:  # the connection's health check and thread checks, as for any query
        if connection.vendor != "postgresql":
            yield cursor
            return
        from django.db.backends.postgresql.base import (  # type: ignore[attr-defined]  # defined with psycopg 3 only
            ServerBindingCursor,
        )

        # Django's own wrapping (debug logging, error translation) of a cursor it did not make: no public hook.
        bound = connection._prepare_cursor(ServerBindingCursor(connection.connection))  # type: ignore[attr-defined]
        try:
            yield bound
        finally:
            bound.close()


def advisory_lock_key(name: str) -> int:
    """The 64-bit key PostgreSQL's advisory locks take, for a lock's name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_xact_lock(name: str) -> None:
    """Serialises the transactions that take the lock `name` until each ends (PostgreSQL; elsewhere a no-op:
    SQLite serialises writers itself)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_lock_key(name)])


def columns_of(model: type[models.Model], alias: str) -> str:
    """`alias.col, ...` for every concrete field of `model`, in field order: what `instance_from_row` reads."""
    return ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for field in model._meta.concrete_fields)


def instance_from_row(model: type[M], values: Sequence[Any]) -> M:
    """A model instance from a hand-written statement's row (`columns_of` order), as a queryset would build
    it: the backend's and each field's converters applied (SQLite's dates and UUIDs, JSON), then
    `from_db`. For the few hot statements that the ORM cannot write (UPDATE ... RETURNING) or compiles at
    a cost the request path notices."""
    attnames, converters = _row_reading(model, connection.vendor)
    converted = []
    for (column, field_converters), value in zip(converters, values, strict=True):
        for convert in field_converters:
            value = convert(value, column, connection)
        converted.append(value)
    return model.from_db(connection.alias, attnames, converted)


@lru_cache(maxsize=64)
def _row_reading(model: type[models.Model], vendor: str) -> tuple[list[str], list[tuple[Any, list[Any]]]]:
    """Per model and database vendor, once: the attnames and, per column, the converters a queryset uses."""
    fields = model._meta.concrete_fields
    converters = []
    for field in fields:
        column = cast(Any, field).get_col(model._meta.db_table)  # every Field has it; the stubs omit it
        converters.append((column, [*connection.ops.get_db_converters(column), *column.get_db_converters(connection)]))
    return [field.attname for field in fields], converters


def db_value(model: type[models.Model], field_name: str, value: Any) -> Any:
    """`value` as a parameter of a hand-written statement for `model.field_name` (a UUID is text on SQLite)."""
    return model._meta.get_field(field_name).get_db_prep_value(value, connection)  # type: ignore[union-attr]
