"""`make profile`: where one call of a hot path spends its time, in this process, as deployed.

Recreates its own PostgreSQL database (BENCH_DATABASE_URL with `_profile` appended to its name), runs
the real WSGI application with DEBUG off against it and Redis (BENCH_REDIS_URL), and for each path
prints the SQL statements of one warm call with their times, then the mean time per call; with
`--cprofile`, the functions that took longest. `deliver` sends SMS through the `http` backend to a
local sink one task per SMS (`sms_deliver`); `drain` sends `--calls` of them in one drain (`sms_drain`:
one claim, the calls in flight together), its time given per SMS; `--sink-delay 0.25` makes the sink answer
as a provider does, after 250 ms.

    python bench/hotpaths.py request-new request-reused verify get deliver drain [--calls 500] [--cprofile]
        [--sink-delay S]

`--cprofile` prints the 25 functions of most cumulative time; PROFILE_SORT=tottime and PROFILE_LINES=N
choose another order and length.
"""

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
PATHS = ("request-new", "request-reused", "verify", "get", "deliver", "drain")


class Sink(BaseHTTPRequestHandler):
    """A provider that accepts every SMS at once."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    delay = 0.0  # seconds before each answer: a provider's latency (--sink-delay)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.delay:
            time.sleep(self.delay)
        body = b'{"id": "profile"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def configure() -> None:
    base = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/zeckta_bench")
    parts = urlsplit(base)
    database_url = urlunsplit(parts._replace(path=parts.path + "_profile"))
    sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "zeckta.settings",
            "DEBUG": "False",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "OTP_HASH_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "localhost",
            "DATABASE_URL": database_url,
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
            "SMS_BACKEND": "http",
            "SMS_HTTP_URL": f"http://127.0.0.1:{sink.server_port}/sms",
            "LOG_LEVEL": "ERROR",
        }
    )
    sys.path.insert(0, str(BASE_DIR))
    from bench.run import recreate_database

    recreate_database(database_url)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", metavar="PATH", help=f"any of {', '.join(PATHS)} (default: all)")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--cprofile", action="store_true", help="also print the 25 costliest functions")
    parser.add_argument("--sink-delay", type=float, default=0.0, help="seconds the sink takes to answer each SMS")
    args = parser.parse_args()
    Sink.delay = args.sink_delay
    unknown = set(args.paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown path(s): {', '.join(sorted(unknown))}")
    configure()

    import django
    import redis.connection

    django.setup()
    import logging

    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from otp.delivery import sms_deliver, sms_drain
    from otp.models import SmsMessage
    from senders.services import sender_name_approve, sender_name_create
    from workspaces.models import FraudGuardMode
    from workspaces.services import api_key_issue, workspace_create

    call_command("migrate", verbosity=0)
    logging.getLogger("django.request").setLevel(logging.ERROR)  # every wrong code is a 400 warning
    clients = {}
    for reuse in (False, True):
        # Sequential numbers of a few ranges are what the fraud guard blocks; in shadow its cost is still paid.
        workspace = workspace_create(
            name=f"profile-{reuse}",
            otp_reuse_enabled=reuse,
            otp_max_attempts=10,
            daily_sms_cap=0,
            fraud_guard_mode=FraudGuardMode.SHADOW,
        )
        sender_name_approve(sender_name=sender_name_create(workspace=workspace, name="ZECKTA"))
        raw_key = api_key_issue(workspace=workspace, tps=10_000).raw_key
        clients[reuse] = Client(
            HTTP_AUTHORIZATION=f"Bearer {raw_key}", HTTP_X_FORWARDED_PROTO="https", HTTP_HOST="localhost"
        )
    numbers = iter(range(10**7))
    # Every command or pipeline this process sends to Redis (the rate limiter, the fraud guard, the broker).
    redis_round_trips = [0]
    send = redis.connection.AbstractConnection.send_packed_command

    def counted_send(self, command, check_health=True):  # noqa: ANN001, ANN202
        redis_round_trips[0] += 1
        return send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counted_send

    def request(reuse: bool) -> dict:
        dest = "+233241234567" if reuse else f"+23324{next(numbers):07d}"
        response = clients[reuse].post(
            "/v1/messaging/otp/request",
            {"dest": dest, "src": "ZECKTA", "purpose": "LOGIN"},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        return response.json()["data"]

    sessions = [request(False)["sessionId"] for _ in range(200)]
    queued = list(SmsMessage.objects.filter(status="queued").values_list("pk", flat=True))
    calls = {
        "request-new": lambda i: request(False),
        "request-reused": lambda i: request(True),
        "verify": lambda i: clients[False].post(
            "/v1/messaging/otp/verify",
            {"sessionId": sessions[i % len(sessions)], "code": "000000"},
            content_type="application/json",
        ),
        "get": lambda i: clients[False].get(f"/v1/messaging/otp/{sessions[i % len(sessions)]}"),
        "deliver": lambda i: sms_deliver(message_id=queued.pop()),
        "drain": lambda i: sms_drain(),
    }
    for path in args.paths or PATHS:
        call = calls[path]
        if path == "drain":
            sms_drain()  # whatever earlier paths left queued, and warm
            for _ in range(10):
                request(False)
            seen: list[str] = []

            def counted(execute, sql, params, many, context, seen=seen):  # noqa: ANN001, ANN202
                seen.append(sql)
                return execute(sql, params, many, context)

            with connection.execute_wrapper(counted):
                sms_drain()
            print(f"\ndrain: {len(seen)} statement(s) for 10 SMS")
            for _ in range(args.calls):
                request(False)
            started = time.perf_counter()
            sent = sms_drain().sent
            print(f"drain: {(time.perf_counter() - started) / sent * 1000:.2f} ms per SMS ({sent} SMS in one drain)")
            continue
        if path == "deliver":
            for _ in range(args.calls * 2 + 10 - len(queued)):
                request(False)
            queued = list(SmsMessage.objects.filter(status="queued").values_list("pk", flat=True))
        for i in range(5):
            call(i)  # warm: caches filled, last_used_at written
        statements: list[tuple[float, str]] = []

        def timed(execute, sql, params, many, context, statements=statements):  # noqa: ANN001, ANN202
            started = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                statements.append((time.perf_counter() - started, " ".join(sql.split())[:100]))

        with connection.execute_wrapper(timed):
            call(0)
        print(f"\n{path}: {len(statements)} statement(s) in one warm call")
        for seconds, sql in statements:
            print(f"  {seconds * 1000:6.2f} ms  {sql}")
        round_trips_before = redis_round_trips[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(args.calls):
            call(i)
        # CPU time of this process per call too: what a busy web process pays, and steady on a loaded machine
        # where the wall time is not (PostgreSQL's and Redis's own work is in the wall time only).
        wall_ms = (time.perf_counter() - started) / args.calls * 1000
        cpu_ms = (time.process_time() - cpu_started) / args.calls * 1000
        round_trips = (redis_round_trips[0] - round_trips_before) / args.calls
        print(
            f"{path}: {wall_ms:.2f} ms per call, {cpu_ms:.2f} ms CPU in this process, {round_trips:.2f} Redis round"
            f" trips per call ({args.calls} calls)"
        )
        if args.cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(args.calls):
                call(i)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(
                int(os.environ.get("PROFILE_LINES", "25"))
            )
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
