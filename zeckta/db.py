"""Database helpers shared by the apps."""

import hashlib

from django.db import connection


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
