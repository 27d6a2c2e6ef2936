"""What a large session table costs PostgreSQL: table and index sizes, and the hourly purge's time.

    python bench/pgscale.py [--sessions 1000000] [--database-url postgres://postgres@127.0.0.1:5432/zeckta_pgscale]

Recreates the database, migrates, stores N past sessions of one workspace one second apart, back from now
(each with its SMS row, as `make bench --seed-sessions` does, and its attempt row), prints the size of each table and
index, then times the purge of the oldest day of them (86,400 sessions, one a second) twice: through
the service's own `otp_sessions_purge` (Django's cascade, collected in Python) and as two plain SQL DELETEs
on a copy of the same rows. docs/operations.md (PostgreSQL at scale) has the numbers of this machine.
"""

import argparse
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

from run import create_bench_workspace, recreate_database, seed_sessions  # noqa: E402

ATTEMPTS_SQL = """
INSERT INTO otp_smsattempt (message_id, route_key, route_name, status, provider_message_id, provider_status,
                            error_code, error, started_at, finished_at)
SELECT id, 'default', 'default', 'accepted', provider_message_id, '', '', '', created_at, created_at
  FROM otp_smsmessage
"""
SIZES_SQL = """
SELECT c.relname, c.relkind, pg_relation_size(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND (c.relname LIKE 'otp_otpsession%%' OR c.relname LIKE 'otp_smsmessage%%'
       OR c.relname LIKE 'otp_smsattempt%%' OR c.relname LIKE 'otp_session_%%' OR c.relname LIKE 'otp_sms_%%')
   AND c.relkind IN ('r', 'i')
 ORDER BY c.relkind DESC, pg_relation_size(c.oid) DESC
"""


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:8.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/zeckta_pgscale")
    parser.add_argument("--purge-days", type=int, default=1, help="days of the oldest sessions to purge")
    args = parser.parse_args()

    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "DJANGO_SETTINGS_MODULE": "zeckta.settings",
            "DEBUG": "True",
            "REDIS_URL": "",
            "CELERY_BROKER_URL": "",
        }
    )
    recreate_database(args.database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"], cwd=BASE_DIR, check=True)
    create_bench_workspace()
    print(f"seeded {args.sessions} sessions with their SMS in {seed_sessions(args.database_url, args.sessions):.0f}s")

    from django.db import connection
    from django.utils import timezone

    from otp.expiry import otp_sessions_purge

    with connection.cursor() as cursor:
        # Each SMS with the attempt row of its one provider call, as delivery leaves it.
        cursor.execute(ATTEMPTS_SQL)
        cursor.execute("VACUUM ANALYZE otp_smsattempt")
        cursor.execute(SIZES_SQL)
        rows = cursor.fetchall()
    for name, kind, size in rows:
        print(f"{'table' if kind == 'r' else 'index'} {name:40} {megabytes(size)}")
    print(f"total {'':40} {megabytes(sum(size for _, _, size in rows))}")

    # The seed puts one session a second back from now (at most 30 days): the purge takes the oldest
    # `--purge-days` days of them. Copied aside first, for the plain-SQL comparison after the service's purge.
    span_days = min(args.sessions, 30 * 86400) // 86400
    keep_days = max(span_days - args.purge_days, 0)
    # One instant for every statement below (each its own transaction, each with its own now()).
    cutoff = f"'{(timezone.now() - timedelta(days=keep_days)).isoformat()}'::timestamptz"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE purge_sessions AS SELECT * FROM otp_otpsession WHERE created_at < {cutoff}")
        cursor.execute("SELECT count(*) FROM purge_sessions")
        sessions = cursor.fetchone()[0]
        cursor.execute(
            "CREATE TABLE purge_sms AS SELECT m.* FROM otp_smsmessage m JOIN purge_sessions s ON s.id = m.session_id"
        )
        cursor.execute(
            "CREATE TABLE purge_attempts AS SELECT a.* FROM otp_smsattempt a JOIN purge_sms m ON m.id = a.message_id"
        )
    started = time.monotonic()
    rows = otp_sessions_purge(older_than_days=keep_days)  # every row Django's cascade deleted
    service_seconds = time.monotonic() - started
    print(
        f"otp_sessions_purge: {sessions} sessions ({rows} rows with their SMS and attempts) in"
        f" {service_seconds:.1f}s, {sessions / service_seconds:,.0f} sessions/s"
    )

    with connection.cursor() as cursor:
        for table, copy in [
            ("otp_otpsession", "purge_sessions"),
            ("otp_smsmessage", "purge_sms"),
            ("otp_smsattempt", "purge_attempts"),
        ]:
            cursor.execute(f"INSERT INTO {table} SELECT * FROM {copy}")
            cursor.execute(f"VACUUM ANALYZE {table}")
        started = time.monotonic()
        cursor.execute(
            "DELETE FROM otp_smsattempt WHERE message_id IN (SELECT m.id FROM otp_smsmessage m"
            f" JOIN otp_otpsession s ON s.id = m.session_id WHERE s.created_at < {cutoff})"
        )
        cursor.execute(
            "DELETE FROM otp_smsmessage WHERE session_id IN"
            f" (SELECT id FROM otp_otpsession WHERE created_at < {cutoff})"
        )
        cursor.execute(f"DELETE FROM otp_otpsession WHERE created_at < {cutoff}")
        sql_seconds = time.monotonic() - started
    print(
        f"plain SQL DELETEs: the same {sessions} sessions in {sql_seconds:.1f}s,"
        f" {sessions / sql_seconds:,.0f} sessions/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
