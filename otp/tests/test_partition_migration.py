"""Migration otp 0021, or `manage.py partition_tables` after a migration with plain tables, on a deployment's
database: plain tables full of rows become daily partitions.

A database of its own (the test database's name + `_convert`), migrated by `manage.py migrate` as an
operator would: up to the migration before 0021 (or to the end with OTP_PARTITION_BY_DAY off), seeded with
sessions over the past 40 days (with their SMS, attempts, wrong codes and a test inbox row), a pending
session whose code still works, then migrated to the end (or converted by the command). The rows within
retention are all there, in their day's partition, the older ones gone; the pending session verifies; new
rows continue the ids.
"""

import os
import subprocess
import sys
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's"),
]

BASE_DIR = Path(__file__).resolve().parents[2]
CONVERSION = "0021_per_send_tables_by_day"
DAYS = 40  # seeded back from now: the 10 oldest are past the default 30 days' retention
PER_DAY = 50

SEED_SQL = """
INSERT INTO otp_otpsession (public_id, workspace_id, sender_name_id, dest, country, src, purpose, code_digest,
                            status, attempts_used, max_attempts, app_hash, message_template, resends,
                            web_otp_domain, created_at, expires_at)
SELECT gen_random_uuid(), w.id, sn.id, '+23350' || lpad(g::text, 7, '0'), 'GH', sn.name, 'LOGIN', md5(g::text),
       'EXPIRED', 0, 5, '', 'Your code is <OTP>.', 0, '',
       now() - g * (interval '1 day' / %(per_day)s), now() - g * (interval '1 day' / %(per_day)s) + interval '5 min'
  FROM generate_series(1, %(count)s) AS g, workspaces_workspace w, senders_sendername sn
 WHERE sn.workspace_id = w.id;
INSERT INTO otp_smsmessage (public_id, session_id, workspace_id, "to", country, src, status, encoding, segments,
                            units, attempts, route_key, route_name, route_attempts, routes_tried, provider_message_id,
                            last_error, next_attempt_at, created_at, updated_at)
SELECT gen_random_uuid(), s.id, s.workspace_id, s.dest, s.country, s.src, 'sent', 'GSM-7', 1, 1, 1, 'default',
       'default', 1, '[]', md5(s.id::text), '', s.created_at, s.created_at, s.created_at
  FROM otp_otpsession s;
INSERT INTO otp_smsattempt (message_id, route_key, route_name, status, provider_message_id, provider_status,
                            error_code, error, started_at)
SELECT id, 'default', 'default', 'accepted', provider_message_id, '', '', '', created_at FROM otp_smsmessage;
INSERT INTO otp_wrongcode (workspace_id, dest, created_at) SELECT workspace_id, dest, created_at FROM otp_otpsession;
INSERT INTO otp_testinboxmessage (workspace_id, session_id, dest, src, encrypted_text, created_at)
SELECT workspace_id, id, dest, src, '\\x00', created_at FROM otp_otpsession ORDER BY id LIMIT 5;
-- A live one, with a code digest the verify below names (a UUIDv4 id, as before UUIDv7: looked up everywhere).
INSERT INTO otp_otpsession (public_id, workspace_id, sender_name_id, dest, country, src, purpose, code_digest,
                            status, attempts_used, max_attempts, app_hash, message_template, resends,
                            web_otp_domain, created_at, expires_at)
SELECT '11111111-2222-4333-8444-555555555555', w.id, sn.id, '+233509999999', 'GH', sn.name, 'LOGIN', 'the-digest',
       'PENDING', 0, 5, '', '', 0, '', now(), now() + interval '10 min'
  FROM workspaces_workspace w JOIN senders_sendername sn ON sn.workspace_id = w.id
"""


def _url(name: str) -> str:
    parts = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/zeckta"))
    return urlunsplit(parts._replace(path=f"/{name}"))


def _manage(url: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs `manage.py` as an operator would, with these environment variables; returns what it printed."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "zeckta.settings_test", **(env or {})}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True, timeout=300, capture_output=True
    )
    return done.stdout.decode()


def _counts(conn) -> dict[str, int]:
    tables = ("otp_otpsession", "otp_smsmessage", "otp_smsattempt", "otp_wrongcode", "otp_testinboxmessage")
    return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in tables}


@pytest.fixture
def database():
    name = f"{connection.settings_dict['NAME']}_convert"
    with psycopg.connect(_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _url(name)
    with psycopg.connect(_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _seed(database: str) -> tuple[dict[str, int], int, int]:
    """Seeds the migrated database: (row counts, sessions within retention, highest session id)."""
    _manage(
        database,
        "shell",
        "-c",
        "from workspaces.tests.factories import WorkspaceFactory;"
        "from senders.tests.factories import SenderNameFactory;"
        "SenderNameFactory(workspace=WorkspaceFactory(slug='convert'), name='ZECKTA')",
    )
    with psycopg.connect(database, autocommit=True) as conn:
        for statement in SEED_SQL.split(";\n"):
            conn.execute(statement, {"count": DAYS * PER_DAY, "per_day": PER_DAY})
        before = _counts(conn)
        retention = settings.OTP_SESSION_RETENTION_DAYS
        # What the conversion keeps: from the day before the oldest within retention (as the purge would).
        kept_since = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - %s * interval '1 day'"
        kept = conn.execute(
            f"SELECT count(*) FROM otp_otpsession WHERE created_at >= {kept_since}", [retention + 1]
        ).fetchone()[0]
        max_id = conn.execute("SELECT max(id) FROM otp_otpsession").fetchone()[0]
        assert before["otp_otpsession"] == DAYS * PER_DAY + 1
    return before, kept, max_id


def _assert_converted(database: str, before: dict[str, int], kept: int, max_id: int) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        after = _counts(conn)
        assert after["otp_otpsession"] == kept < before["otp_otpsession"]
        assert after["otp_smsmessage"] == after["otp_smsattempt"] == after["otp_otpsession"] - 1  # the live one: none
        assert after["otp_testinboxmessage"] == before["otp_testinboxmessage"]  # not partitioned: untouched
        kinds = dict(
            conn.execute(
                "SELECT relname, relkind FROM pg_class WHERE relname IN"
                " ('otp_otpsession', 'otp_smsmessage', 'otp_smsattempt', 'otp_wrongcode', 'otp_testinboxmessage')"
            ).fetchall()
        )
        assert kinds == {
            "otp_otpsession": "p",
            "otp_smsmessage": "p",
            "otp_smsattempt": "p",
            "otp_wrongcode": "p",
            "otp_testinboxmessage": "r",
        }
        # Each row in its day's partition; no foreign key into the partitioned tables.
        misplaced = conn.execute(
            "SELECT count(*) FROM otp_otpsession"
            " WHERE tableoid::regclass::text"
            " <> 'otp_otpsession_p' || to_char(created_at AT TIME ZONE 'UTC', 'YYYYMMDD')"
        ).fetchone()[0]
        assert misplaced == 0
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid::regclass::text IN"
                " ('otp_otpsession', 'otp_smsmessage', 'otp_smsattempt', 'otp_wrongcode')"
            ).fetchone()[0]
            == 0
        )
        # The live session verifies through the new function; the ids go on after the old ones.
        workspace_id = conn.execute("SELECT id FROM workspaces_workspace WHERE slug = 'convert'").fetchone()[0]
        outcome = conn.execute(
            "SELECT outcome FROM otp_verify(%s, '11111111-2222-4333-8444-555555555555', 'the-digest', now(), false,"
            " false)",
            [workspace_id],
        ).fetchone()[0]
        assert outcome == "APPROVED"
        new_id = conn.execute(
            "INSERT INTO otp_wrongcode (workspace_id, dest, created_at) VALUES (%s, '+233500000000', now())"
            " RETURNING id",
            [workspace_id],
        ).fetchone()[0]
        assert new_id > 0
        assert conn.execute("SELECT nextval('otp_otpsession_id_seq')").fetchone()[0] > max_id
        # Each day's functions (otp.day_functions): today's name today's partitions.
        today = f"{datetime.now(UTC):%Y%m%d}"
        source = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", [f"otp_request_p{today}"]).fetchone()
        assert source is not None and f"otp_otpsession_p{today}" in source[0]


def test_the_migration_partitions_a_seeded_database(database):
    previous = import_module(f"otp.migrations.{CONVERSION}").Migration.dependencies[0][1]
    _manage(database, "migrate", "workspaces", "--noinput", "-v0")
    _manage(database, "migrate", "senders", "--noinput", "-v0")
    _manage(database, "migrate", "otp", previous, "--noinput", "-v0")
    before, kept, max_id = _seed(database)

    _manage(database, "migrate", "--noinput", "-v0")

    _assert_converted(database, before, kept, max_id)


def test_the_command_partitions_a_database_migrated_with_plain_tables(database):
    plain = {"OTP_PARTITION_BY_DAY": "False"}
    _manage(database, "migrate", "--noinput", "-v0", env=plain)
    with psycopg.connect(database, autocommit=True) as conn:
        assert conn.execute("SELECT relkind FROM pg_class WHERE relname = 'otp_otpsession'").fetchone()[0] == "r"
    before, kept, max_id = _seed(database)

    converted = _manage(database, "partition_tables", env=plain)

    assert "partitioned by day" in converted
    _assert_converted(database, before, kept, max_id)
    assert "already partitioned" in _manage(database, "partition_tables")  # a second run changes nothing


def test_the_command_refuses_a_database_other_than_postgresql(monkeypatch):
    from otp.management.commands import partition_tables

    monkeypatch.setattr(partition_tables, "connection", SimpleNamespace(vendor="sqlite"))
    with pytest.raises(CommandError, match="PostgreSQL's: sqlite keeps plain tables"):
        call_command("partition_tables")
