"""What the admin dashboard costs with a million stored sessions: the rollup job and the pages, timed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/zeckta_dash .venv/bin/python bench/dashboard.py --sessions 1000000

Migrates the database DATABASE_URL names (it must be a scratch one: --reseed empties its OTP tables), then,
unless it already holds the sessions, stores N live sessions over the last 30 days in five workspaces, six
countries and four routes (each with its SMS rows: resends, receipts, failures, and one pumped range among
them) plus 2 % test-mode sessions, by bulk SQL. Then times, in this process, against that database:

1. the rollup job: its first run (the whole backfill) and its steady-state run (the hours that may change);
2. the dashboard's read (`dashboard_get`) and the admin index page rendered with it, with their query counts;
3. other admin pages an operator opens: the session list (first page, and a search by number), a session,
   a workspace and a route.

Prints a Markdown table (medians of several runs) for docs/performance.md.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

WORKSPACES = [
    ("acme", "Acme Bank", 0.50),
    ("globex", "Globex Shop", 0.25),
    ("initech", "Initech", 0.15),
    ("umbrella", "Umbrella Health", 0.07),
    ("hooli", "Hooli", 0.03),
]
# country, its numbers' first digits, its route ("default": the SMS_BACKEND settings), share of the traffic
COUNTRIES = [
    ("GH", "+23324", "afritel-gh", 0.35),
    ("NG", "+234803", "afritel-ng", 0.25),
    ("KE", "+25471", "safari-sms", 0.15),
    ("GB", "+44770", "euro-sms", 0.10),
    ("US", "+1202", "default", 0.10),
    ("ZA", "+2782", "default", 0.05),
]
PUMPED_RANGE = "+23324555"  # the first digits of the pumped range (the last four vary)
PUMPED_SMS = 1500  # in the last 24 hours, none approved


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000, help="live sessions to store (default 1,000,000)")
    parser.add_argument("--reseed", action="store_true", help="empty the OTP tables and store them again")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each read (default 7; the median shows)")
    return parser.parse_args()


def setup_django() -> None:
    warnings.filterwarnings("ignore", "No directory at", UserWarning)  # no collectstatic needed here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zeckta.settings")
    os.environ.setdefault("DEBUG", "False")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("OTP_HASH_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "False")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if "postgres" not in os.environ.get("DATABASE_URL", ""):
        raise SystemExit("bench/dashboard.py: set DATABASE_URL to a scratch PostgreSQL database")
    import django

    django.setup()


def _case(column: str, choices: list[tuple[str, float]]) -> str:
    """A CASE over `column` (uniform in [0, 1)) that picks each value with its share."""
    branches, edge = [], 0.0
    for value, share in choices[:-1]:
        edge += share
        branches.append(f"WHEN {column} < {edge:.4f} THEN '{value}'")
    return f"CASE {' '.join(branches)} ELSE '{choices[-1][0]}' END"


def seed_sql(count: int) -> list[str]:
    country = _case("r2", [(code, share) for code, _, _, share in COUNTRIES])
    prefix = _case("r2", [(first, share) for _, first, _, share in COUNTRIES])
    route_of = "CASE s.country " + " ".join(f"WHEN '{code}' THEN '{name}'" for code, _, name, _ in COUNTRIES) + " END"
    workspace = _case("r1", [(slug, share) for slug, _, share in WORKSPACES])
    return [
        "SELECT setseed(0.42)",
        f"""CREATE TEMP TABLE seed AS
            SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5
              FROM generate_series(1, {count + count // 50}) AS g""",
        # Live sessions spread evenly over the last 30 days, the newest first in g; 1 in 51 is a test session.
        f"""INSERT INTO otp_otpsession (public_id, workspace_id, sender_name_id, dest, country, src, purpose,
                code_digest, status, attempts_used, max_attempts, created_at, expires_at, verified_at,
                message_template, app_hash, web_otp_domain, resends, is_test)
            SELECT gen_random_uuid(), w.id, sn.id, x.prefix || lpad(floor(r3 * 9999999)::int::text, 7, '0'),
                   x.country, sn.name, 'LOGIN', md5(g::text) || md5(g::text || 'x'),
                   CASE WHEN x.created_at > now() - interval '5 minutes' THEN 'PENDING'
                        WHEN r4 < 0.78 THEN 'APPROVED' WHEN r4 < 0.95 THEN 'EXPIRED'
                        WHEN r4 < 0.98 THEN 'MAX_ATTEMPTS_REACHED' ELSE 'CANCELED' END,
                   CASE WHEN r4 >= 0.95 AND r4 < 0.98 THEN 5 WHEN r5 < 0.1 THEN 1 ELSE 0 END, 5,
                   x.created_at, x.created_at + interval '5 minutes',
                   CASE WHEN r4 < 0.78 AND x.created_at <= now() - interval '5 minutes'
                        THEN x.created_at + interval '40 seconds' END,
                   '<OTP> is your code.', '', '', CASE WHEN r5 > 0.92 THEN 1 ELSE 0 END, mod(g, 51) = 0
              FROM (SELECT *, {country} AS country, {prefix} AS prefix,
                           now() - (g::float8 / {count + count // 50}) * interval '30 days' AS created_at
                      FROM seed) AS x
              JOIN workspaces_workspace w ON w.slug = {workspace}
              JOIN senders_sendername sn ON sn.workspace_id = w.id""",
        # The pumped range: many sessions in the last 24 hours to one block of numbers, none approved.
        f"""INSERT INTO otp_otpsession (public_id, workspace_id, sender_name_id, dest, country, src, purpose,
                code_digest, status, attempts_used, max_attempts, created_at, expires_at, verified_at,
                message_template, app_hash, web_otp_domain, resends, is_test)
            SELECT gen_random_uuid(), w.id, sn.id, '{PUMPED_RANGE}' || lpad((g % 10000)::text, 4, '0'), 'GH',
                   sn.name, 'LOGIN', md5(g::text), 'EXPIRED', 0, 5,
                   now() - g * interval '50 seconds', now() - g * interval '50 seconds' + interval '5 minutes',
                   NULL, '<OTP> is your code.', '', '', 0, false
              FROM generate_series(1, {PUMPED_SMS}) AS g
              JOIN workspaces_workspace w ON w.slug = 'globex'
              JOIN senders_sendername sn ON sn.workspace_id = w.id""",
        # One SMS per session, and a second for the ones resent; each with a status as delivery leaves it.
        f"""INSERT INTO otp_smsmessage (public_id, session_id, workspace_id, "to", country, src, status, encoding,
                segments, units, attempts, route_key, route_name, route_attempts, routes_tried, provider_message_id,
                last_error, next_attempt_at, created_at, updated_at, finished_at, delivered_at, is_test)
            SELECT gen_random_uuid(), s.id, s.workspace_id, s.dest, s.country, s.src, y.status, 'GSM-7', 1, 1, 1,
                   coalesce(r.public_id::text, 'default'), y.route, 1, '[]',
                   CASE WHEN y.status <> 'failed' THEN md5(s.id::text || y.n::text) ELSE '' END,
                   CASE WHEN y.status = 'failed' THEN 'provider: 21211 invalid number' ELSE '' END,
                   s.created_at, s.created_at + y.n * interval '30 seconds',
                   s.created_at + y.n * interval '30 seconds' + interval '3 seconds',
                   s.created_at + y.n * interval '30 seconds' + interval '3 seconds',
                   CASE WHEN y.status = 'delivered' THEN s.created_at + y.n * interval '30 seconds'
                        + interval '8 seconds' END, s.is_test
              FROM otp_otpsession s
              CROSS JOIN LATERAL generate_series(0, s.resends) AS n
              CROSS JOIN LATERAL (
                SELECT n, {route_of} AS route,
                       CASE WHEN s.dest LIKE '{PUMPED_RANGE}%' THEN 'sent'
                            WHEN s.created_at > now() - interval '2 minutes' THEN 'queued'
                            ELSE (ARRAY['delivered', 'delivered', 'delivered', 'delivered', 'delivered',
                                        'delivered', 'delivered', 'delivered', 'delivered', 'delivered',
                                        'delivered', 'delivered', 'delivered', 'delivered', 'delivered',
                                        'delivered', 'delivered', 'sent', 'failed', 'undeliverable']
                                 )[1 + mod(s.id * 7 + n * 13, 20)::int] END AS status
              ) AS y
              LEFT JOIN senders_route r ON r.name = y.route""",
        # One call to the provider per SMS that left the outbox, saying what the provider said.
        """INSERT INTO otp_smsattempt (message_id, route_id, route_key, route_name, status, provider_message_id,
                provider_status, error_code, error, started_at, finished_at, receipt_at)
            SELECT m.id, r.id, m.route_key, m.route_name,
                   CASE m.status WHEN 'sent' THEN 'accepted' ELSE m.status END, m.provider_message_id,
                   CASE m.status WHEN 'delivered' THEN 'DELIVRD' WHEN 'undeliverable' THEN 'UNDELIV' ELSE '' END,
                   CASE m.status WHEN 'failed' THEN '21211' ELSE '' END, m.last_error, m.updated_at - interval '3 s',
                   m.updated_at, m.delivered_at
              FROM otp_smsmessage m LEFT JOIN senders_route r ON r.name = m.route_name
             WHERE m.status <> 'queued' AND NOT m.is_test""",
        "DROP TABLE seed",
    ]


def seed(count: int, *, reseed: bool) -> None:
    from django.db import connection
    from django.utils import timezone

    from otp.models import OtpSession
    from senders.models import Route, SenderName
    from senders.routes import route_create
    from workspaces.models import Workspace

    if OtpSession.objects.filter(is_test=False).count() >= count and not reseed:
        print(f"bench: the database already holds {count:,} live sessions or more; --reseed to start again")
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE otp_otpsession, otp_smsmessage, otp_smsattempt, cockpit_traffichour, "
            "cockpit_numbersuspect, cockpit_rollupstate CASCADE"
        )
    for slug, name, _ in WORKSPACES:
        workspace, _ = Workspace.objects.get_or_create(slug=slug, defaults={"name": name})
        SenderName.objects.get_or_create(
            workspace=workspace,
            name=slug.upper()[:11],
            defaults={"status": SenderName.Status.APPROVED, "approved_at": timezone.now()},
        )
    for priority, (country, _, route, _) in enumerate(COUNTRIES):
        if route != "default" and not Route.objects.filter(name=route).exists():
            route_create(
                name=route,
                backend="http",
                values={"url": "http://127.0.0.1:9/sms"},
                countries=country,
                priority=10 * (priority + 1),
                actor="bench",
            )
    started = time.monotonic()
    with connection.cursor() as cursor:
        for statement in seed_sql(count):
            cursor.execute(statement)
        cursor.execute("VACUUM ANALYZE otp_otpsession")
        cursor.execute("VACUUM ANALYZE otp_smsmessage")
        cursor.execute("VACUUM ANALYZE otp_smsattempt")
        try:
            cursor.execute("CHECKPOINT")  # written out now, not in the middle of the timings
        except Exception:  # noqa: BLE001, S110 (not a superuser: the timings only get noisier)
            pass
    sessions = OtpSession.objects.count()
    print(f"bench: stored {sessions:,} sessions (test ones included) in {time.monotonic() - started:.0f} s")


def timed(runs: int, action: Callable[[], object]) -> tuple[float, int]:
    """The median milliseconds of `runs` calls (after one warm-up) and the queries of one call."""
    from django.db import connection

    action()
    # Counted by a wrapper: a request through the test client resets the connection's query log.
    queries: list[str] = []
    with connection.execute_wrapper(lambda execute, sql, *rest: queries.append(sql) or execute(sql, *rest)):
        action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(queries)


def main() -> None:
    args = parse_args()
    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from cockpit.models import RollupState
    from cockpit.selectors import dashboard_get
    from cockpit.services import traffic_rollup_refresh
    from otp.models import OtpSession, SmsMessage
    from senders.models import Route
    from workspaces.models import Workspace

    call_command("migrate", verbosity=0)
    seed(args.sessions, reseed=args.reseed)
    rows: list[tuple[str, str, str]] = []

    started = time.perf_counter()
    result = traffic_rollup_refresh(rebuild_from=timezone.now() - timezone.timedelta(days=31))
    rows.append(
        (
            "rollup, first run (31 days rebuilt)",
            f"{(time.perf_counter() - started) * 1000:,.0f} ms",
            f"{result.rows:,} rows, {result.suspects} suspects",
        )
    )
    for label, settle in (("each minute", False), ("every 15 minutes, settling", True)):
        runs = []
        for _ in range(3):
            if settle:
                RollupState.objects.update(settled_at=None)
            started = time.perf_counter()
            result = traffic_rollup_refresh()
            runs.append((time.perf_counter() - started) * 1000)
        rows.append(
            (
                f"rollup, {label} ({result.hours} hours rebuilt, and the pumping list)",
                f"{statistics.median(runs):,.0f} ms",
                f"{result.rows:,} rows, {result.suspects} suspects",
            )
        )

    now = timezone.now()
    for window in ("24h", "30d"):
        ms, queries = timed(args.runs, lambda window=window: dashboard_get(now=now, window=window))
        rows.append((f"dashboard_get, window {window}", f"{ms:.1f} ms", f"{queries} queries"))

    user, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    session = OtpSession.objects.filter(is_test=False).order_by("-id").first()
    dest = session.dest if session else "+233"
    pages = [
        ("admin index with the dashboard", reverse("admin:index")),
        ("admin index, 30 days", reverse("admin:index") + "?window=30d"),
        ("OTP sessions list, first page", reverse("admin:otp_otpsession_changelist")),
        ("OTP sessions list, search by number", reverse("admin:otp_otpsession_changelist") + f"?q={dest[:-2]}"),
        ("one session with its SMS and attempts", reverse("admin:otp_otpsession_change", args=[session.pk])),
        ("SMS messages list, first page", reverse("admin:otp_smsmessage_changelist")),
        (
            "a workspace with its traffic",
            reverse("admin:workspaces_workspace_change", args=[Workspace.objects.get(slug="acme").pk]),
        ),
        (
            "a route with its traffic",
            reverse("admin:senders_route_change", args=[Route.objects.get(name="afritel-gh").pk]),
        ),
        ("routes list", reverse("admin:senders_route_changelist")),
        ("operator guide", reverse("admin:guide")),
    ]
    for label, url in pages:

        def get(url: str = url) -> None:
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

        ms, queries = timed(args.runs, get)
        rows.append((label, f"{ms:.1f} ms", f"{queries} queries"))

    live = OtpSession.objects.filter(is_test=False).count()
    print(f"\n{live:,} live sessions, {SmsMessage.objects.count():,} SMS rows; medians of {args.runs} runs\n")
    print("| what | time | |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {' | '.join(row)} |")


if __name__ == "__main__":
    main()
