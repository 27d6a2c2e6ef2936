"""Database helpers shared by the apps."""

import hashlib

from django.db import connection


def advisory_xact_lock(name: str) -> None:
    """Serialises the transactions that take the lock `name` until each ends (PostgreSQL; elsewhere a no-op:
    SQLite serialises writers itself)."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest, "big", signed=True)])
