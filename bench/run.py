"""`make bench`: throughput and latency of POST /otp/request and POST /otp/verify, as deployed.

Loopback only and bounded (about a minute). It recreates its own PostgreSQL database, starts the service
the production way -- gunicorn (sync workers) with DEBUG off, tasks published to Redis and sent by a real
Celery worker through the `file` SMS backend -- then drives it with a pure-Python load generator
(threads, http.client; no wrk needed):

1. request: each call goes to a new destination (+23320xxxxxxx), so reuse and the per-destination limit
   never interfere; the bench workspace's key has a request rate far above what the machine can reach.
2. drain: waits until the worker has written every SMS to the file (the outbox drained).
3. get: GET /otp/{sessionId} over those sessions, the reference the other two are compared with
   (req/s ratios hold on a busy machine better than absolute numbers).
4. verify: each session is verified once with the code read from its SMS (the APPROVED path).

Prints a table and writes bench/results/latest.json (plus gunicorn.log, celery.log and sms.jsonl).
Settings: BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/zeckta_bench; dropped and
recreated on every run), BENCH_REDIS_URL (default redis://127.0.0.1:6379/14).
"""

import argparse
import http.client
import itertools
import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BASE_DIR / "bench" / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/zeckta_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DEST_PREFIX = "+23320"  # Ghanaian mobile numbers: +23320 then 7 digits, all valid
CODE_RE = re.compile(r"\b[0-9]{6}\b")
DRAIN_TIMEOUT_SECONDS = 120
SERVER_START_TIMEOUT_SECONDS = 30


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured phase (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured requests first (default 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--celery-concurrency", type=int, default=1, help="Celery worker processes (default 1)")
    parser.add_argument(
        "--seed-sessions",
        type=int,
        default=0,
        metavar="N",
        help="store N past sessions (with their SMS) in the bench workspace first (default 0)",
    )
    return parser.parse_args()


# --- Service setup -------------------------------------------------------------------------------


def service_env(database_url: str, redis_url: str, sms_file: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "zeckta.settings",
        "DEBUG": "False",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "OTP_HASH_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "False",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "SMS_BACKEND": "file",
        "SMS_FILE_PATH": str(sms_file),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    return env


def recreate_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    params = {"host": parts.hostname, "port": parts.port, "user": parts.username, "password": parts.password}
    params = {key: value for key, value in params.items() if value is not None}
    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **params) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def create_bench_workspace() -> str:
    """The bench workspace, its sender and a key; returns the raw key. Runs with the service's settings."""
    import django

    django.setup()
    from django.db import connections
    from django.utils import timezone

    from senders.models import SenderName
    from workspaces.models import FraudGuardMode, Workspace
    from workspaces.services import api_key_issue

    workspace = Workspace.objects.create(
        name="Bench",
        slug="bench",
        # Every request goes to a new number anyway; a high limit keeps the count query honest but never hit.
        destination_limit=1_000_000,
        # Sequential numbers of a few ranges are what the fraud guard blocks; in shadow its cost is still paid.
        fraud_guard_mode=FraudGuardMode.SHADOW,
        daily_sms_cap=0,
    )
    SenderName.objects.create(
        workspace=workspace, name="ZECKTA", status=SenderName.Status.APPROVED, approved_at=timezone.now()
    )
    raw_key = api_key_issue(workspace=workspace, name="bench", tps=10_000).raw_key
    connections.close_all()
    return raw_key


# Past sessions of the bench workspace itself (the worst case: every index starts with the workspace),
# to other numbers (+23350...), one a second back from now (at most 30 days): approved, expired or locked, each with its
# SMS row as delivery leaves it.
SEED_SESSIONS_SQL = """
-- A UUIDv7 of a given time, as zeckta.db.uuid7(at) makes the service's ids: time first, so appended to their
-- index, and the time a lookup by id prunes partitions with (otp.partitions). No semicolon in here: split below.
CREATE OR REPLACE FUNCTION pg_temp.uuid7_at(at timestamptz) RETURNS uuid LANGUAGE sql AS $f$
SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 3)
        || to_hex(8 + floor(random() * 4)::int) || substr(md5(random()::text), 1, 15))::uuid
$f$;
INSERT INTO otp_otpsession (public_id, workspace_id, sender_name_id, dest, country, src, purpose, code_digest,
                            status, attempts_used, max_attempts, app_hash, message_template, resends,
                            web_otp_domain, created_at, expires_at, verified_at)
SELECT pg_temp.uuid7_at(now() - mod(g, 2592000) * interval '1 second'), w.id, sn.id, '+23350' || lpad(g::text, 7, '0'),
       'GH', sn.name, 'LOGIN',
       md5(g::text) || md5(g::text || 'x'),
       (ARRAY['APPROVED', 'EXPIRED', 'MAX_ATTEMPTS_REACHED'])[1 + mod(g, 3)], mod(g, 3), 5, '',
       'Your login code is <OTP>. It expires in <MINUTES> minutes. Never share it with anyone.', 0, '',
       now() - mod(g, 2592000) * interval '1 second', now() - mod(g, 2592000) * interval '1 second' + interval '5 min',
       CASE WHEN mod(g, 3) = 0 THEN now() - mod(g, 2592000) * interval '1 second' + interval '30 s' END
  FROM generate_series(1, %(count)s) AS g, workspaces_workspace w, senders_sendername sn
 WHERE w.slug = 'bench' AND sn.workspace_id = w.id;
INSERT INTO otp_smsmessage (public_id, session_id, workspace_id, "to", country, src, status, encoding, segments,
                            units, attempts, route_key, route_name, route_attempts, routes_tried, provider_message_id,
                            last_error, next_attempt_at, created_at, updated_at, finished_at)
SELECT pg_temp.uuid7_at(s.created_at), s.id, s.workspace_id, s.dest, s.country, s.src, 'sent', 'GSM-7', 1, 1, 1,
       'default', 'default', 1,
       '[]', md5(s.id::text), '', s.created_at, s.created_at, s.created_at, s.created_at
  FROM otp_otpsession s WHERE left(s.dest, 6) = '+23350';
"""


def seed_sessions(database_url: str, count: int) -> float:
    """Stores `count` past sessions and their SMS; returns the seconds it took."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in SEED_SESSIONS_SQL.split(";"):
            if statement.strip():
                conn.execute(statement, {"count": count})
        conn.execute("VACUUM ANALYZE")
        # Written out now, not by a checkpoint in the middle of the measured load.
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            pass
    return time.monotonic() - started


def clear_queue(redis_url: str) -> None:
    """Drops task messages a previous, interrupted run left in the bench's own Redis database."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    # The service's three queues (settings.CELERY_TASK_QUEUES), and Celery's default one of older runs.
    client.delete("sms", "webhooks", "housekeeping", "celery", "unacked", "unacked_index")
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}; see bench/results/gunicorn.log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer in time; see bench/results/gunicorn.log")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- Load generation -----------------------------------------------------------------------------


class Phase:
    """Latencies and statuses of one measured phase, filled by many threads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []  # seconds
        self.statuses: dict[str, int] = {}
        self.elapsed = 0.0  # seconds
        self._lock = threading.Lock()

    def record(self, latency: float, status: str) -> None:
        with self._lock:
            self.latencies.append(latency)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def summary(self) -> dict:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float:
            return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 2) if ordered else 0.0

        return {
            "requests": len(ordered),
            "seconds": round(self.elapsed, 2),
            "rps": round(len(ordered) / self.elapsed, 1) if self.elapsed else 0.0,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
            "statuses": dict(sorted(self.statuses.items())),
        }


def post(port: int, path: str, raw_key: str, body: dict | None, method: str = "POST") -> tuple[float, int, dict | None]:
    """One call on a new connection (gunicorn's sync workers close it after each answer anyway)."""
    payload = json.dumps(body) if body is not None else None
    headers = {"Authorization": f"Bearer {raw_key}"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        data = response.read()
        latency = time.perf_counter() - started
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        return latency, response.status, parsed
    finally:
        conn.close()


def run_threads(concurrency: int, work) -> float:
    """Runs `work()` in `concurrency` threads until each returns; returns the wall time in seconds."""
    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def request_phase(
    port: int, raw_key: str, *, seconds: float, concurrency: int, first_number: int, sessions: dict[str, str] | None
) -> tuple[Phase, int]:
    """POST /otp/request to distinct numbers for `seconds`; fills sessions {dest: sessionId}."""
    phase = Phase("POST /v1/messaging/otp/request")
    counter = iter(range(first_number, 10**7))
    counter_lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def work() -> None:
        while time.perf_counter() < deadline:
            with counter_lock:
                number = next(counter)
            dest = f"{DEST_PREFIX}{number:07d}"
            try:
                latency, status, body = post(
                    port, "/v1/messaging/otp/request", raw_key, {"dest": dest, "src": "ZECKTA", "purpose": "LOGIN"}
                )
            except OSError as exc:
                phase.record(0.0, type(exc).__name__)
                continue
            phase.record(latency, str(status))
            if status == 200 and sessions is not None:
                with counter_lock:
                    sessions[dest] = body["data"]["sessionId"]

    phase.elapsed = run_threads(concurrency, work)
    with counter_lock:
        next_number = next(counter)
    return phase, next_number


def read_codes(sms_file: Path) -> dict[str, str]:
    """{destination: code} from the SMS the worker wrote (one JSON object per line)."""
    codes = {}
    if not sms_file.exists():
        return codes
    for line in sms_file.read_text(encoding="utf-8").splitlines():
        try:
            sms = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        match = CODE_RE.search(sms["text"])
        if match:
            codes[sms["to"]] = match.group()
    return codes


def wait_for_drain(sms_file: Path, sessions: dict[str, str]) -> tuple[dict[str, str], float]:
    started = time.perf_counter()
    while True:
        codes = read_codes(sms_file)
        if all(dest in codes for dest in sessions) or time.perf_counter() - started > DRAIN_TIMEOUT_SECONDS:
            return codes, time.perf_counter() - started
        time.sleep(0.25)


def verify_phase(
    port: int, raw_key: str, work_items: list[tuple[str, str]], *, seconds: float, concurrency: int
) -> Phase:
    """POST /otp/verify with the right code, each session once, until `seconds` pass or sessions run out."""
    phase = Phase("POST /v1/messaging/otp/verify")
    items = iter(work_items)
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def work() -> None:
        while time.perf_counter() < deadline:
            with lock:
                item = next(items, None)
            if item is None:
                return
            session_id, code = item
            try:
                latency, status, body = post(
                    port, "/v1/messaging/otp/verify", raw_key, {"sessionId": session_id, "code": code}
                )
            except OSError as exc:
                phase.record(0.0, type(exc).__name__)
                continue
            phase.record(latency, str(status))

    phase.elapsed = run_threads(concurrency, work)
    return phase


def session_get_phase(port: int, raw_key: str, session_ids: list[str], *, seconds: float, concurrency: int) -> Phase:
    """GET /otp/{sessionId} for `seconds`, cycling through the sessions: the reference for the other two.

    Key lookup, rate limit and one indexed SELECT with the response envelope: close to the "floor" of the
    performance notes, so request/verify as a ratio of it hold even when the machine is busy.
    """
    phase = Phase("GET /v1/messaging/otp/{sessionId}")
    items = itertools.cycle(session_ids)
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def work() -> None:
        while time.perf_counter() < deadline:
            with lock:
                session_id = next(items)
            try:
                latency, status, _ = post(port, f"/v1/messaging/otp/{session_id}", raw_key, None, method="GET")
            except OSError as exc:
                phase.record(0.0, type(exc).__name__)
                continue
            phase.record(latency, str(status))

    phase.elapsed = run_threads(concurrency, work)
    return phase


# --- Main ----------------------------------------------------------------------------------------


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except OSError:
        return ""


def main() -> int:
    args = parse_args()
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    sms_file = RESULTS_DIR / "sms.jsonl"
    sms_file.unlink(missing_ok=True)
    env = service_env(database_url, redis_url, sms_file)

    print(f"bench: recreating {urlsplit(database_url).path.lstrip('/')}, migrating ...", flush=True)
    recreate_database(database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
    os.environ.update(env)  # create_bench_workspace() runs Django in this process with the same settings
    sys.path.insert(0, str(BASE_DIR))
    raw_key = create_bench_workspace()
    clear_queue(redis_url)
    if args.seed_sessions:
        print(f"bench: storing {args.seed_sessions} past sessions first ...", flush=True)
        print(f"bench: seeded in {seed_sessions(database_url, args.seed_sessions):.0f}s", flush=True)

    port = free_port()
    with open(RESULTS_DIR / "gunicorn.log", "w") as gunicorn_log, open(RESULTS_DIR / "celery.log", "w") as celery_log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "zeckta",
                "worker",
                "--loglevel=WARNING",
                f"--concurrency={args.celery_concurrency}",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=celery_log,
            stderr=subprocess.STDOUT,
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "zeckta.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
                "--timeout",
                "60",
                "--no-control-socket",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=gunicorn_log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_server(port, server)
            print(
                f"bench: gunicorn ({args.workers} sync workers) on 127.0.0.1:{port}, Celery worker "
                f"(concurrency {args.celery_concurrency}), {args.concurrency} client threads",
                flush=True,
            )
            print(f"bench: warm-up {args.warmup:.0f}s, then {args.duration:.0f}s of POST /otp/request ...", flush=True)
            _, next_number = request_phase(
                port, raw_key, seconds=args.warmup, concurrency=args.concurrency, first_number=0, sessions=None
            )
            sessions: dict[str, str] = {}
            requests, _ = request_phase(
                port,
                raw_key,
                seconds=args.duration,
                concurrency=args.concurrency,
                first_number=next_number,
                sessions=sessions,
            )
            print(f"bench: waiting for the worker to send {len(sessions)} SMS ...", flush=True)
            codes, drain_seconds = wait_for_drain(sms_file, sessions)
            work_items = [(session_id, codes[dest]) for dest, session_id in sessions.items() if dest in codes]
            print(f"bench: {args.duration:.0f}s of GET /otp/{{sessionId}} (reference) ...", flush=True)
            reads = session_get_phase(
                port, raw_key, list(sessions.values()), seconds=args.duration, concurrency=args.concurrency
            )
            print(f"bench: up to {args.duration:.0f}s of POST /otp/verify ({len(work_items)} sessions) ...", flush=True)
            verifies = verify_phase(port, raw_key, work_items, seconds=args.duration, concurrency=args.concurrency)
        finally:
            stop(server)
            stop(worker)

    phases = [requests.summary(), verifies.summary(), reads.summary()]
    reference_rps = phases[2]["rps"] or 1.0
    for phase in phases:
        phase["ratio_to_get"] = round(phase["rps"] / reference_rps, 2)
    undelivered = len(sessions) - sum(1 for dest in sessions if dest in codes)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_revision(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "config": {
            "duration_seconds": args.duration,
            "warmup_seconds": args.warmup,
            "client_threads": args.concurrency,
            "gunicorn_workers": args.workers,
            "celery_concurrency": args.celery_concurrency,
            "sms_backend": "file",
            "database": urlsplit(database_url).path.lstrip("/"),
            "seeded_sessions": args.seed_sessions,
        },
        "request": phases[0],
        "verify": phases[1],
        "get_session": phases[2],
        "outbox": {
            "sms_expected": len(sessions),
            "sms_not_written": undelivered,
            "drain_seconds_after_load": round(drain_seconds, 2),
        },
    }
    (RESULTS_DIR / "latest.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print()
    print(
        f"{'endpoint':24} {'requests':>8} {'req/s':>8} {'x GET':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses"
    )
    names = ["POST /otp/request", "POST /otp/verify", "GET /otp/{sessionId}"]
    for name, summary in zip(names, phases, strict=True):
        print(
            f"{name:24} {summary['requests']:>8} {summary['rps']:>8} {summary['ratio_to_get']:>6} "
            f"{summary['p50_ms']:>8} {summary['p95_ms']:>8} {summary['p99_ms']:>8}  {summary['statuses']}"
        )
    print(
        f"outbox: {len(sessions) - undelivered}/{len(sessions)} SMS sent by the worker, drained "
        f"{drain_seconds:.1f}s after the load stopped"
    )
    print(f"written: {(RESULTS_DIR / 'latest.json').relative_to(BASE_DIR)}")

    unexpected = {status for phase in phases for status in phase["statuses"] if status != "200"}
    if unexpected or undelivered:
        print(f"bench: FAILED: unexpected statuses {sorted(unexpected)}, {undelivered} SMS not sent", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
