"""What a run of the fraud guard's conversion rules costs on a seeded day of sessions (otp.fraudrules).

Recreates the database, migrates (plain tables, or partitioned by day with --partitioned), seeds
--sessions live sessions a day over --days days, ten to a range at most per day by default (--ranges
ranges of one workspace, 70 % approved), each with its SMS, then prints `EXPLAIN (ANALYZE, BUFFERS)` of
range_conversion read in full and bounded (a run 10 s after the last), of the other statements a run reads,
and the wall time of whole runs of each kind (median of --runs).

    .venv/bin/python bench/fraudscan.py --sessions 500000 --ranges 100000
"""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
sys.path.insert(0, str(BASE_DIR / "bench"))

from run import create_bench_workspace, recreate_database  # noqa: E402

# Sessions spread evenly over the last `days` days, newest now; range k of `ranges` gets session g when
# g * 7919 mod ranges = k. Approved 20 s after creation, 7 in 10 (none younger than 20 s).
SEED_SQL = """
INSERT INTO otp_otpsession (public_id, workspace_id, sender_name_id, dest, country, src, purpose, code_digest,
                            status, attempts_used, max_attempts, app_hash, message_template, resends,
                            web_otp_domain, created_at, expires_at, verified_at)
SELECT gen_random_uuid(), w.id, sn.id, x.dest, 'GH', sn.name, 'LOGIN', md5(g::text) || md5(g::text || 'x'),
       CASE WHEN x.approved THEN 'APPROVED' ELSE 'EXPIRED' END, 1, 5, '', 'Your code is <OTP>.', 0, '',
       x.created_at, x.created_at + interval '5 min',
       CASE WHEN x.approved THEN x.created_at + interval '20 s' END
  FROM generate_series(1, %(count)s) AS g
 CROSS JOIN LATERAL (
        SELECT '+2332' || lpad((mod(g::bigint * 7919, %(ranges)s))::text, 5, '0')
               || lpad(mod(g / %(ranges)s, 1000)::text, 3, '0') AS dest,
               %(now)s - (g::float8 * %(seconds)s / %(count)s) * interval '1 second' AS created_at,
               mod(g::bigint * 31, 10) < 7 AND g::float8 * %(seconds)s / %(count)s >= 20 AS approved
       ) x
 CROSS JOIN workspaces_workspace w JOIN senders_sendername sn ON sn.workspace_id = w.id
 WHERE w.slug = 'bench'
"""
SEED_SMS_SQL = """
INSERT INTO otp_smsmessage (public_id, session_id, workspace_id, "to", country, src, status, encoding, segments,
                            units, attempts, route_key, route_name, route_attempts, routes_tried, provider_message_id,
                            last_error, next_attempt_at, created_at, updated_at, finished_at)
SELECT gen_random_uuid(), s.id, s.workspace_id, s.dest, s.country, s.src, 'sent', 'GSM-7', 1, 1, 1,
       'default', 'default', 1, '[]', md5(s.id::text), '', s.created_at, s.created_at, s.created_at, s.created_at
  FROM otp_otpsession s
"""


def explain(sql: str, params: dict) -> tuple[float, list[str]]:
    from django.db import connection, transaction

    from otp import fraudrules

    with transaction.atomic(), connection.cursor() as cursor:
        if sql is fraudrules.RANGE_CONVERSION_BOUNDED_SQL:
            cursor.execute("SET LOCAL jit = off")  # as otp.fraudrules._rows runs it
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = [row[0] for row in cursor.fetchall()]
    took = next(float(line.split()[2]) for line in plan if line.startswith("Execution Time"))
    return took, plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=500_000, help="sessions a day")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--ranges", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--partitioned", action="store_true")
    parser.add_argument("--plans", action="store_true", help="print the plans, not only their times")
    parser.add_argument("--no-rollup", action="store_true", help="leave the cockpit's rollup out (minutes when large)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/zeckta_fraudscan_seed")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--reuse", action="store_true", help="measure the database a previous run seeded")
    args = parser.parse_args()
    os.environ.update(
        {
            "DATABASE_URL": args.database_url,
            "DJANGO_SETTINGS_MODULE": "zeckta.settings",
            "DEBUG": "False",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "OTP_HASH_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "localhost",
            "REDIS_URL": args.redis_url,
            "LOG_LEVEL": "ERROR",
            "DATABASE_STATEMENT_TIMEOUT_SECONDS": "0",
            "OTP_PARTITION_BY_DAY": str(args.partitioned),
        }
    )
    if not args.reuse:
        recreate_database(args.database_url)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"], cwd=BASE_DIR, check=True
        )
        create_bench_workspace()

    import django

    django.setup()
    from django.db import connection
    from django.utils import timezone

    from fraud import guard
    from otp import fraudrules
    from workspaces.models import Workspace

    now = timezone.now()
    if not args.reuse:
        if args.partitioned:
            from otp.partitions import partitions_ensure

            partitions_ensure(now=now, ahead_days=2, back_days=args.days + 1)
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(
                SEED_SQL,
                {"count": args.sessions * args.days, "ranges": args.ranges, "now": now, "seconds": 86400 * args.days},
            )
            cursor.execute(SEED_SMS_SQL)
            cursor.execute("VACUUM ANALYZE")
        print(f"seeded {args.sessions * args.days:,} sessions in {time.monotonic() - started:.0f} s")
        Workspace.objects.update(fraud_guard_mode="shadow")
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(created_at) FROM otp_otpsession")
            now = cursor.fetchone()[0] + timedelta(seconds=1)
    print(f"{args.sessions:,} sessions a day, {args.days} day(s), {args.ranges:,} ranges, now {now.isoformat()}")

    last = now - timedelta(seconds=10)
    statements = {
        "range_conversion, full": (fraudrules.RANGE_CONVERSION_SQL, {"now": now, "scope": "range"}),
        "range_conversion, bounded (10 s)": (
            fraudrules.RANGE_CONVERSION_BOUNDED_SQL,
            {"now": now, "scope": "range", "last": last, "overlap": fraudrules.RULES_EDGE_OVERLAP},
        ),
        "country_conversion": (fraudrules.COUNTRY_CONVERSION_SQL, {"now": now, "scope": "country"}),
        "country history": (
            fraudrules.COUNTRY_HISTORY_SQL,
            {"now": now, "workspaces": list(Workspace.objects.values_list("pk", flat=True))},
        ),
        "rules state": (fraudrules.RULES_STATE_SQL, {}),
    }
    for name, (sql, params) in statements.items():
        explain(sql, params)  # warm
        took, plan = explain(sql, params)
        buffers = next((line.strip() for line in plan if "Buffers" in line), "")
        print(f"{name:34} {took:9.1f} ms  {buffers}")
        if args.plans:
            print("\n".join(plan))

    if not args.no_rollup:
        from cockpit.services import traffic_rollup_refresh

        traffic_rollup_refresh(now=now)  # the first run fills the retention's hours
        started = time.monotonic()
        traffic_rollup_refresh(now=now)
        print(f"{'cockpit rollup (a later run)':34} {(time.monotonic() - started) * 1000:9.1f} ms")

    state = fraudrules._rows(fraudrules.RULES_STATE_SQL, {})[0][0]
    for kind in ("full", "bounded"):
        times = []
        for _ in range(args.runs):
            client = guard._redis().client
            client.delete(guard.RULES_EDGE_KEY)
            if kind == "bounded":
                guard.rules_edge_write(edge=guard.RulesEdge(at=last, state=state), full=True, ttl_seconds=3600)
            started = time.monotonic()
            fraudrules.fraud_rules_run(now=now)
            times.append(time.monotonic() - started)
        print(f"fraud_rules_run, {kind:8} median {statistics.median(times) * 1000:8.1f} ms of {args.runs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
