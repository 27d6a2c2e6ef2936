"""What a large session table costs PostgreSQL: sizes, the hot paths' speed, and the retention purge.

    python bench/pgscale.py [--sessions 10000000] [--calls 2000]
        [--database-url postgres://postgres@127.0.0.1:5432/zeckta_pgscale] [--redis-url redis://127.0.0.1:6379/14]

Recreates the database, migrates (the per-send tables partitioned by day, otp.partitions), stores N past
sessions of one workspace spread over the last 30 days (each with its SMS row, as `make bench --seed-sessions`
does, and its attempt row), prints the size of each table and index (summed over its daily partitions) and
the bytes per OTP, then times the hot paths in this process through the real WSGI application (DEBUG off:
a new request, a reused one, a wrong-code verify, a session read, a delivery to a local sink; the mean of
`--calls` calls each, after a warm-up), then the purge of the oldest day (a DROP of its partitions).
Run it at 10,000 and at 10,000,000 sessions and compare: docs/performance.md has this machine's numbers.
"""

import argparse
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

from hotpaths import Sink  # noqa: E402
from run import create_bench_workspace, recreate_database, seed_sessions  # noqa: E402

ATTEMPTS_SQL = """
INSERT INTO otp_smsattempt (message_id, route_key, route_name, status, provider_message_id, provider_status,
                            error_code, error, started_at, finished_at)
SELECT id, 'default', 'default', 'accepted', provider_message_id, '', '', '', created_at, created_at
  FROM otp_smsmessage
"""
# Each table and index of the per-send tables, summed over its partitions (a partitioned relation has no
# storage of its own: its leaves do).
SIZES_SQL = """
SELECT * FROM (
    SELECT c.relname, c.relkind,
           (SELECT coalesce(sum(pg_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t) AS size
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND NOT c.relispartition
       AND (c.relname LIKE 'otp_otpsession%%' OR c.relname LIKE 'otp_smsmessage%%'
            OR c.relname LIKE 'otp_smsattempt%%' OR c.relname LIKE 'otp_session_%%' OR c.relname LIKE 'otp_sms_%%')
       AND c.relkind IN ('r', 'i', 'p', 'I') AND c.relname !~ '_p[0-9]{8}_u[0-9]+$'
    UNION ALL  -- the one-pending-session index, one per partition (otp.partitions): summed
    SELECT 'otp_otpsession_pYYYYMMDD_u0 (each day)', 'i', coalesce(sum(pg_relation_size(c.oid)), 0)
      FROM pg_class c WHERE c.relname ~ '^otp_otpsession_p[0-9]{8}_u0$'
) sizes
 ORDER BY relkind IN ('r', 'p') DESC, size DESC
"""


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:8.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=2000, help="calls of each hot path timed")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/zeckta_pgscale")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--reuse", action="store_true", help="measure the database a previous run seeded (its attempts included)"
    )
    args = parser.parse_args()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "DJANGO_SETTINGS_MODULE": "zeckta.settings",
            "DEBUG": "False",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "OTP_HASH_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "localhost",
            "REDIS_URL": args.redis_url,
            "SMS_BACKEND": "http",
            "SMS_HTTP_URL": f"http://127.0.0.1:{sink.server_port}/sms",
            "LOG_LEVEL": "ERROR",
            # The seed's statements run for minutes; the hot paths are measured, not limited.
            "DATABASE_STATEMENT_TIMEOUT_SECONDS": "0",
        }
    )
    if not args.reuse:
        recreate_database(args.database_url)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"], cwd=BASE_DIR, check=True
        )
        raw_key = create_bench_workspace()
        seconds = seed_sessions(args.database_url, args.sessions)
        print(f"seeded {args.sessions:,} sessions with their SMS in {seconds:.0f}s")

    import django

    django.setup()
    import logging

    from django.db import connection
    from django.test import Client

    from otp.delivery import sms_deliver
    from otp.expiry import otp_sessions_purge
    from otp.models import SmsMessage
    from otp.partitions import SESSIONS, partitions_of

    logging.getLogger("django.request").setLevel(logging.ERROR)
    if args.reuse:
        from workspaces.models import Workspace
        from workspaces.services import api_key_issue

        raw_key = api_key_issue(workspace=Workspace.objects.get(slug="bench"), name="again", tps=10_000).raw_key
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM otp_otpsession WHERE left(dest, 6) = '+23350'")
            args.sessions = cursor.fetchone()[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM otp_smsattempt)")
        if not cursor.fetchone()[0]:
            # Each SMS with the attempt row of its one provider call, as delivery leaves it.
            cursor.execute(ATTEMPTS_SQL)
            cursor.execute("VACUUM ANALYZE otp_smsattempt")
        cursor.execute(SIZES_SQL)
        rows = cursor.fetchall()
    for name, kind, size in rows:
        print(f"{'table' if kind in ('r', 'p') else 'index'} {name:40} {megabytes(size)}")
    total = sum(size for _, _, size in rows)
    tables = sum(size for _, kind, size in rows if kind in ("r", "p"))
    print(f"total {'':40} {megabytes(total)} ({megabytes(tables).strip()} of tables)")
    print(f"per OTP (session, SMS, attempt, their indexes): {total / max(args.sessions, 1):,.0f} bytes")

    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="localhost")
    numbers = iter(range(10**7))

    def request(dest: str | None = None) -> dict:
        response = client.post(
            "/v1/messaging/otp/request",
            {"dest": dest or f"+23324{next(numbers):07d}", "src": "ZECKTA", "purpose": "LOGIN"},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        return response.json()["data"]

    from django.utils import timezone as django_timezone

    run_started = django_timezone.now()
    sessions = [request()["sessionId"] for _ in range(200)]
    calls = {
        "request-new": lambda i: request(),
        "request-reused": lambda i: request("+233241234567"),
        "verify": lambda i: client.post(
            "/v1/messaging/otp/verify",
            {"sessionId": sessions[i % len(sessions)], "code": "000000"},
            content_type="application/json",
        ),
        "get": lambda i: client.get(f"/v1/messaging/otp/{sessions[i % len(sessions)]}"),
    }
    # Five rounds each, the paths interleaved: on a shared machine the best round is the one least disturbed
    # by other work, and the one to compare between runs (the median is printed too).
    for i in range(20):
        for call in calls.values():
            call(i)  # warm
    per_round = max(args.calls // 5, 1)
    rounds: dict[str, list[float]] = {path: [] for path in calls}
    for _ in range(5):
        for path, call in calls.items():
            started = time.perf_counter()
            for i in range(per_round):
                call(i)
            rounds[path].append((time.perf_counter() - started) / per_round * 1000)
    for path, times in rounds.items():
        times.sort()
        print(f"{path}: best round {times[0]:.3f} ms per call, median {times[2]:.3f} ms (5 x {per_round} calls)")
    # This run's own SMS only (a reused database's older ones were encrypted under another run's key).
    queued = list(SmsMessage.objects.filter(status="queued", created_at__gte=run_started).values_list("pk", flat=True))[
        : args.calls
    ]
    started = time.perf_counter()
    for pk in queued:
        sms_deliver(message_id=pk)
    print(f"deliver: {(time.perf_counter() - started) / len(queued) * 1000:.3f} ms per call ({len(queued)} calls)")

    # The purge of the oldest full day: its partitions dropped (the retention set so that it, and the
    # partial day before it, are past it), as the hourly purge does when a day passes retention.
    from django.utils import timezone

    with connection.cursor() as cursor:
        days_with_rows = []
        for name, _lower, upper in partitions_of(SESSIONS.table):
            cursor.execute(f"SELECT count(*) FROM {name}")
            count = cursor.fetchone()[0]
            if count:
                days_with_rows.append((name, upper, count))
    if len(days_with_rows) < 2:
        print("otp_sessions_purge: not measured, the sessions fill less than two days (seed more)")
        return 0
    (first, _, first_count), (name, upper, count) = days_with_rows[:2]
    days = (timezone.now() - upper).days
    started = time.perf_counter()
    dropped = otp_sessions_purge(older_than_days=days)
    seconds = time.perf_counter() - started
    print(
        f"otp_sessions_purge: {dropped} daily partitions of sessions, with their SMS and attempts, in"
        f" {seconds * 1000:.0f} ms: {name} ({count:,} sessions), {first} ({first_count:,}), and the empty ones"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
