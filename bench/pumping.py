"""`make pumping`: SMS-pumping attacks replayed against the fraud guard, beside legitimate users (issue 18).

Loopback only and bounded (about 9 minutes with the defaults; `--quick` about 5). It recreates its own
PostgreSQL database and empties its own Redis database, starts the service the production way -- gunicorn
(sync workers, DEBUG off) and one Celery worker with beat, the `http` SMS backend aimed at an SMS sink in
this process -- creates its workspaces with the operator commands, and drives them over HTTP:

- legitimate users: 5 requests/s (Poisson) to random numbers of the real mobile ranges of GH, NG and KE
  (phonenumbers' example mobile numbers, every digit after the first randomised, each number checked
  valid and mobile); 75 % of them read their code from the sink (as a user reads the phone) and verify
  it 5 to 90 s after the answer; the rest never do. Each legitimate country has a week of past sessions
  (75 % approved) before the replay starts: a workspace in use, not a new one;
- (a) a burst of 1,000 requests over the sequential numbers of one GH range (16 at a time);
- (b) 2,000 requests at 3/s over 200 ranges of Uzbekistan (UZ), a country no legitimate user has;
- (c) one request a minute to one KE range for a day;
- (d) an attacker who mimics legitimate conversion: 300 requests at 1/s over 30 NG ranges, who enters
  one code in five (the numbers are the attacker's, so the codes are too). No rule of this kind can see
  it: it is in the table to say so.

Every scenario runs twice at once, in a workspace in `enforce` and in one in `shadow`, with the same
numbers at the same times, so the shadow run shows the decisions enforce took while refusing nothing.

The clock is compressed: every duration of the guard is a workspace setting, so a lane that runs K times
faster divides them all by K (with the OTP validity and the destination window), multiplies every rate
by K and divides every user's delay by K. The "fast" lanes (legitimate users, a, b, d) run at K=2: the
legitimate population then asks 10 codes a second per lane, still a load the machine serves on time.
The "slow" lanes (c) compress a day to 8 minutes (K=180); no legitimate population runs there (at K=180
it would be 900 requests a second) and none is needed: (c) is one range that no legitimate user touches.
A setting the compression would take below its floor of 1 s stays at 1 s; the report says which.

Prints the markdown tables (and writes bench/results/pumping.md, pumping.json and the service's logs).
Exits 1 when a target of issue 18 is missed: (a) <= 10 SMS, (b) <= 100, (c) <= 25, no legitimate request
refused, and nothing refused in shadow.
Settings: PUMPING_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/zeckta_pumping; dropped and
recreated on every run), PUMPING_REDIS_URL (default redis://127.0.0.1:6379/13; emptied on every run).
"""

import argparse
import contextlib
import functools
import heapq
import http.client
import io
import itertools
import json
import os
import platform
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import phonenumbers
from phonenumbers import PhoneNumberType

BASE_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = BASE_DIR / "bench" / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/zeckta_pumping"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
SERVER_START_TIMEOUT_SECONDS = 60
HTTP_TIMEOUT_SECONDS = 30
# After the last answer, how long the sink may take to receive every SMS owed.
DRAIN_TIMEOUT_SECONDS = 60
CODE_RE = re.compile(r"\b[0-9]{6}\b")
MOBILE_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE)
RANGE_DIGITS_DROPPED = 3
# The OTP validity is not compressed below this (real seconds): a task whose code has expired sends nothing,
# and an SMS may wait this long in the one shared outbox behind a burst of another lane.
OTP_VALIDITY_FLOOR_SECONDS = 60  # as fraud.models.number_range: a range is E.164 less its last three digits

# The populations (service-clock seconds and rates: the replay divides them by the lane's K).
LEGIT_COUNTRIES = ("GH", "NG", "KE")
LEGIT_RATE_PER_SECOND = 5.0
LEGIT_VERIFY_SHARE = 0.75
LEGIT_VERIFY_DELAY_SECONDS = (5.0, 90.0)
LEGIT_HISTORY_SESSIONS = 200  # per legitimate country, over the week before the replay
ATTACK_A_AT_SECONDS = 60.0  # after the legitimate users have been at it for a minute
ATTACK_A_CONCURRENCY = 16
ATTACK_B_COUNTRY = "UZ"
ATTACK_B_AT_SECONDS = 90.0
ATTACK_B_RATE_PER_SECOND = 3.0
ATTACK_B_RANGES = 200
ATTACK_C_COUNTRY = "KE"
ATTACK_C_EVERY_SECONDS = 60.0
DAY_SECONDS = 86_400
ATTACK_D_COUNTRY = "NG"
ATTACK_D_AT_SECONDS = 90.0
ATTACK_D_REQUESTS = 300
ATTACK_D_RATE_PER_SECOND = 1.0
ATTACK_D_RANGES = 30
ATTACK_D_VERIFY_SHARE = 0.2
ATTACK_D_VERIFY_DELAY_SECONDS = (5.0, 30.0)
# After the last attack request, the legitimate users go on this long: a conversion is judged after
# 120 s, and a block that tripped late must be seen not to touch them.
FAST_TAIL_SECONDS = 150.0
# Issue 18's targets with the default thresholds: SMS an attack may get through in enforce.
TARGETS = {"a": 10, "b": 100, "c": 25}
POPULATIONS = ("a", "b", "c", "d", "legit")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k-fast", type=float, default=2.0, help="clock compression of the fast lanes (default 2)")
    parser.add_argument("--k-slow", type=float, default=180.0, help="clock compression of attack (c) (default 180)")
    parser.add_argument("--b-requests", type=int, default=2000, help="requests of attack (b) (default 2000)")
    parser.add_argument("--c-hours", type=float, default=24.0, help="service-clock hours attack (c) lasts (default 24)")
    parser.add_argument("--modes", default="enforce,shadow", help="lanes' guard modes (default enforce,shadow)")
    parser.add_argument("--phases", default="fast,slow", help="fast (legit, a, b, d) and/or slow (c)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="K=3 and K=360: about 5 minutes, a heavier load (15 legitimate requests/s per lane) and attack (c) "
        "compressed further",
    )
    parser.add_argument(
        "--rules-every",
        type=float,
        default=0.25,
        help="seconds between runs of the conversion rules (FRAUD_RULES_INTERVAL_SECONDS; default 0.25: 45 s "
        "of the slow lanes' clock, where production's is 10 s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--celery-concurrency", type=int, default=2, help="Celery worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=64, help="client threads for paced calls (default 64)")
    parser.add_argument("--seed", type=int, default=18, help="random seed of numbers and times (default 18)")
    parser.add_argument(
        "--service-env", action="append", default=[], metavar="KEY=VALUE", help="extra environment (repeatable)"
    )
    args = parser.parse_args()
    if args.quick:
        args.k_fast, args.k_slow = 3.0, 360.0
    if args.k_fast < 1 or args.k_slow < 1:
        parser.error("K must be at least 1")
    return args


# --- Numbers -------------------------------------------------------------------------------------


def number_range(dest: str) -> str:
    return dest[:-RANGE_DIGITS_DROPPED]


@functools.lru_cache(maxsize=100_000)
def region_of(dest: str) -> str:
    return phonenumbers.region_code_for_number(phonenumbers.parse(dest)) or ""


def is_mobile(dest: str) -> bool:
    number = phonenumbers.parse(dest)
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in MOBILE_TYPES


def example_mobile(region: str) -> str:
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def random_mobile(rng: random.Random, region: str, *, avoid_ranges: Collection[str] = ()) -> str:
    """A valid mobile number of `region`: its example's country code and first national digit, the rest random."""
    example = phonenumbers.example_number_for_type(region, PhoneNumberType.MOBILE)
    national = phonenumbers.national_significant_number(example)
    while True:
        digits = national[0] + "".join(rng.choice("0123456789") for _ in range(len(national) - 1))
        dest = f"+{example.country_code}{digits}"
        if number_range(dest) not in avoid_ranges and is_mobile(dest):
            return dest


def whole_range(prefix: str) -> list[str]:
    """The valid mobile numbers of one range, in order."""
    return [dest for dest in (f"{prefix}{i:03d}" for i in range(1000)) if is_mobile(dest)]


def random_ranges(rng: random.Random, region: str, count: int, *, numbers_each: int) -> dict[str, list[str]]:
    """`count` distinct ranges of `region`, each with `numbers_each` distinct valid numbers in random order."""
    ranges: dict[str, list[str]] = {}
    while len(ranges) < count:
        prefix = number_range(random_mobile(rng, region, avoid_ranges=ranges))
        candidates = (f"{prefix}{suffix:03d}" for suffix in rng.sample(range(1000), 1000))
        numbers = list(itertools.islice((dest for dest in candidates if is_mobile(dest)), numbers_each))
        if len(numbers) == numbers_each:
            ranges[prefix] = numbers
    return ranges


# --- The plan: who asks which number when ---------------------------------------------------------


@dataclass(frozen=True)
class Event:
    at: float  # service-clock seconds from the lane's start
    population: str
    dest: str
    verify_after: float | None = None  # service-clock seconds after the answer; None: the code is never entered
    burst: bool = False  # sent as fast as the service answers, ATTACK_A_CONCURRENCY at a time


@dataclass
class Plan:
    events: list[Event]
    end: float  # service-clock seconds
    described: dict[str, str]  # population -> one line for the table


def fast_plan(rng: random.Random, *, b_requests: int) -> Plan:
    a_range = number_range(example_mobile("GH"))
    a_numbers = whole_range(a_range)
    b_ranges = random_ranges(rng, ATTACK_B_COUNTRY, ATTACK_B_RANGES, numbers_each=-(-b_requests // ATTACK_B_RANGES))
    d_ranges = random_ranges(
        rng, ATTACK_D_COUNTRY, ATTACK_D_RANGES, numbers_each=-(-ATTACK_D_REQUESTS // ATTACK_D_RANGES)
    )
    events = [Event(ATTACK_A_AT_SECONDS, "a", dest, burst=True) for dest in a_numbers]
    b_prefixes = list(b_ranges)
    for i in range(b_requests):  # round robin: each range gets a number in turn
        prefix = b_prefixes[i % len(b_prefixes)]
        dest = b_ranges[prefix][i // len(b_prefixes)]
        events.append(Event(ATTACK_B_AT_SECONDS + i / ATTACK_B_RATE_PER_SECOND, "b", dest))
    d_prefixes = list(d_ranges)
    for i in range(ATTACK_D_REQUESTS):
        prefix = d_prefixes[i % len(d_prefixes)]
        verify = rng.uniform(*ATTACK_D_VERIFY_DELAY_SECONDS) if rng.random() < ATTACK_D_VERIFY_SHARE else None
        events.append(
            Event(
                ATTACK_D_AT_SECONDS + i / ATTACK_D_RATE_PER_SECOND, "d", d_ranges[prefix][i // len(d_prefixes)], verify
            )
        )
    attacks_end = max(event.at for event in events)
    end = attacks_end + FAST_TAIL_SECONDS
    avoid = {number_range(event.dest) for event in events} | {number_range(example_mobile(ATTACK_C_COUNTRY))}
    at = 0.0
    while True:
        at += rng.expovariate(LEGIT_RATE_PER_SECOND)
        if at >= end:
            break
        dest = random_mobile(rng, rng.choice(LEGIT_COUNTRIES), avoid_ranges=avoid)
        verify = rng.uniform(*LEGIT_VERIFY_DELAY_SECONDS) if rng.random() < LEGIT_VERIFY_SHARE else None
        events.append(Event(at, "legit", dest, verify))
    events.sort(key=lambda event: event.at)
    described = {
        "a": f"burst of {len(a_numbers):,} requests over the sequential numbers of GH range {a_range}",
        "b": f"{b_requests:,} requests at {ATTACK_B_RATE_PER_SECOND:g}/s over {len(b_ranges)} "
        f"{ATTACK_B_COUNTRY} ranges",
        "d": f"mimic: {ATTACK_D_REQUESTS} requests at {ATTACK_D_RATE_PER_SECOND:g}/s over {len(d_ranges)} "
        f"{ATTACK_D_COUNTRY} ranges, entering {ATTACK_D_VERIFY_SHARE:.0%} of its codes",
        "legit": f"{LEGIT_RATE_PER_SECOND:g}/s over {', '.join(LEGIT_COUNTRIES)}; {LEGIT_VERIFY_SHARE:.0%} enter the "
        f"code {LEGIT_VERIFY_DELAY_SECONDS[0]:g}-{LEGIT_VERIFY_DELAY_SECONDS[1]:g} s later",
    }
    return Plan(events=events, end=end, described=described)


def slow_plan(rng: random.Random, *, hours: float) -> Plan:
    c_range = number_range(example_mobile(ATTACK_C_COUNTRY))
    numbers = whole_range(c_range)
    order: list[str] = []
    count = int(hours * 3600 / ATTACK_C_EVERY_SECONDS)
    while len(order) < count:  # each number once before any comes back (the destination window never applies)
        order.extend(rng.sample(numbers, len(numbers)))
    events = [Event(i * ATTACK_C_EVERY_SECONDS, "c", dest) for i, dest in enumerate(order[:count])]
    described = {"c": f"one request a minute to {ATTACK_C_COUNTRY} range {c_range} for {hours:g} h"}
    return Plan(events=events, end=count * ATTACK_C_EVERY_SECONDS, described=described)


# --- The SMS sink: the provider, and every user's phone ----------------------------------------------


class Sink:
    """The `http` SMS backend's other end (API.md section 7), in this process: keeps each SMS's text in
    memory only, so that a user (or the attacker who owns the numbers) can read its code."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.posts = 0
        self.duplicates = 0  # a reference seen before: a retry or a double send
        self.bad_auth = 0
        self.references: set[str] = set()
        self.texts: dict[tuple[str, str], list[tuple[float, str]]] = {}  # (from, to) -> [(arrival, text)]
        self.server: ThreadingHTTPServer | None = None

    def receive(self, body: object, authorization: str | None) -> None:
        now = time.time()
        with self.lock:
            self.posts += 1
            if authorization != f"Bearer {self.token}":
                self.bad_auth += 1
            if not isinstance(body, dict):
                return
            reference = str(body.get("reference") or uuid.uuid4())
            if reference in self.references:
                self.duplicates += 1
                return
            self.references.add(reference)
            key = (str(body.get("from")), str(body.get("to")))
            self.texts.setdefault(key, []).append((now, str(body.get("text", ""))))

    def code_after(self, src: str, dest: str, since: float) -> str | None:
        """The code of the first SMS from `src` to `dest` that arrived at or after `since`."""
        with self.lock:
            for arrival, text in self.texts.get((src, dest), []):
                if arrival >= since:
                    match = CODE_RE.search(text)
                    return match.group() if match else None
        return None

    def messages_from(self, src: str) -> list[tuple[str, float]]:
        """(to, arrival) of every distinct SMS from `src`."""
        with self.lock:
            return [
                (to, arrival) for (sender, to), texts in self.texts.items() if sender == src for arrival, _ in texts
            ]

    def start(self) -> int:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length > 0 else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                sink.receive(body, self.headers.get("Authorization"))
                data = json.dumps({"id": str(uuid.uuid4())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self.server.server_address[1]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- The service ---------------------------------------------------------------------------------


def service_env(*, database_url: str, redis_url: str, sink_url: str, sink_token: str, args) -> dict[str, str]:
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
        "SMS_BACKEND": "http",
        "SMS_HTTP_URL": sink_url,
        "SMS_HTTP_TOKEN": sink_token,
        # The conversion rules run from beat: every few seconds in production, compressed here as the clock is.
        "FRAUD_RULES_INTERVAL_SECONDS": str(args.rules_every),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    for item in args.service_env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def recreate_database(database_url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    params = {"host": parts.hostname, "port": parts.port, "user": parts.username, "password": parts.password}
    params = {key: value for key, value in params.items() if value is not None}
    with psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=5, **params) as conn:
        name = sql.Identifier(parts.path.lstrip("/"))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def empty_redis(redis_url: str) -> None:
    """The replay's own Redis database: queues, rate counters and guard keys of an earlier run go."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    client.flushdb()
    client.close()


@dataclass
class Lane:
    """One workspace and the traffic it gets: a phase (fast or slow) in one guard mode."""

    phase: str
    mode: str
    k: float
    plan: Plan
    slug: str = ""
    sender: str = ""
    key: str = ""
    started: float = 0.0  # epoch seconds of service-clock 0
    policy: dict[str, int] = field(default_factory=dict)
    answers: list[dict] = field(default_factory=list)
    verifies: list[dict] = field(default_factory=list)
    late: list[float] = field(default_factory=list)  # seconds each call started after its due time
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return f"{self.phase}-{self.mode}"


def compressed_policy(k: float) -> tuple[dict[str, int], list[str]]:
    """Every duration of the guard (and the OTP validity and destination window) divided by K, floored at
    its minimum; the names of those the floor held."""
    from workspaces.models import FRAUD_SECONDS_FIELDS, FRAUD_SECONDS_MIN, OTP_VALIDITY_SECONDS_MIN, Workspace

    floors = dict.fromkeys(FRAUD_SECONDS_FIELDS, FRAUD_SECONDS_MIN)
    floors.update(
        otp_validity_seconds=max(OTP_VALIDITY_SECONDS_MIN, OTP_VALIDITY_FLOOR_SECONDS), destination_window_seconds=1
    )
    policy, floored = {}, []
    for name, floor in floors.items():
        default = Workspace._meta.get_field(name).default
        if default / k < floor:
            floored.append(f"{name} {default / k:.2g} s -> {floor} s")
        policy[name] = max(floor, round(default / k))
    return policy, floored


def command(name: str, *args: str) -> str:
    """An operator command, as an operator runs it; its last line of output."""
    from django.core.management import call_command

    out = io.StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def create_workspaces(lanes: list[Lane]) -> list[str]:
    """Each lane's workspace (operator commands, then its compressed policy through the ORM); returns the
    notes on floored settings."""
    from workspaces.management.commands.create_workspace import Command as CreateWorkspace
    from workspaces.models import Workspace

    parser = CreateWorkspace().create_parser("manage.py", "create_workspace")
    options = {option for action in parser._actions for option in action.option_strings}
    notes: dict[str, str] = {}
    for lane in lanes:
        lane.slug = f"pumping-{lane.name}"
        lane.sender = f"{lane.phase[:4]}{lane.mode[:3]}".upper()  # FASTENF, SLOWSHA: the SMS's `from`
        create = ["create_workspace", f"Pumping {lane.name}", "--slug", lane.slug]
        if "--fraud-guard" in options:
            create += ["--fraud-guard", lane.mode]
        if "--daily-sms-cap" in options:
            create += ["--daily-sms-cap", "0"]
        command(*create)
        command("add_sender", lane.slug, lane.sender, "--approve")
        lane.key = command("issue_api_key", lane.slug, "--name", "pumping", "--tps", "10000")
        policy, floored = compressed_policy(lane.k)
        # Set here too, for a create_workspace without the flags: the mode, and no daily cap (the guard is
        # what is measured, not the cap).
        Workspace.objects.filter(slug=lane.slug).update(fraud_guard_mode=lane.mode, daily_sms_cap=0, **policy)
        lane.policy = policy
        if floored:
            notes.setdefault(
                lane.phase, f"{lane.phase} lanes, K={lane.k:g}, held at their floor: " + "; ".join(floored)
            )
    return list(notes.values())


def seed_history(lane: Lane) -> None:
    """A week of past sessions to each legitimate country (75 % approved), before the replay starts: the
    workspace has users already, as a real one would. Placed inside the lane's compressed windows."""
    from django.utils import timezone

    from otp.models import OtpSession, SmsMessage
    from senders.models import SenderName
    from workspaces.models import Workspace

    rng = random.Random(f"history-{lane.phase}")
    workspace = Workspace.objects.get(slug=lane.slug)
    sender = SenderName.objects.get(workspace=workspace, name=lane.sender)
    now = timezone.now()
    oldest = lane.policy["fraud_country_velocity_history_seconds"] * 0.9
    newest = lane.policy["fraud_country_conversion_window_seconds"] * 1.1
    sessions, messages = [], []
    for country in LEGIT_COUNTRIES:
        for _ in range(LEGIT_HISTORY_SESSIONS):
            created = now - timedelta(seconds=rng.uniform(newest, oldest))
            approved = rng.random() < LEGIT_VERIFY_SHARE
            session = OtpSession(
                workspace=workspace,
                sender_name=sender,
                dest=random_mobile(rng, country),
                country=country,
                src=sender.name,
                purpose="LOGIN",
                code_digest=secrets.token_hex(32),
                status=OtpSession.Status.APPROVED if approved else OtpSession.Status.EXPIRED,
                attempts_used=1 if approved else 0,
                max_attempts=5,
                created_at=created,
                expires_at=created + timedelta(seconds=lane.policy["otp_validity_seconds"]),
                verified_at=created + timedelta(seconds=rng.uniform(*LEGIT_VERIFY_DELAY_SECONDS) / lane.k)
                if approved
                else None,
            )
            sessions.append(session)
    OtpSession.objects.bulk_create(sessions)
    for session in sessions:
        messages.append(
            SmsMessage(
                session=session,
                workspace=workspace,
                to=session.dest,
                country=session.country,
                src=session.src,
                status=SmsMessage.Status.SENT,
                encoding="GSM-7",
                segments=1,
                units=1,
                attempts=1,
                route_key="default",
                route_name="default",
                next_attempt_at=session.created_at,
                created_at=session.created_at,
                updated_at=session.created_at,
                finished_at=session.created_at,
            )
        )
    SmsMessage.objects.bulk_create(messages)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        # Its own process group: stop() reaches gunicorn's workers and Celery's pool children with it.
        return subprocess.Popen(
            argv, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_server(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {process.returncode}; see bench/results/pumping-web.log")
        with contextlib.suppress(OSError):
            status, _ = call(port, "GET", "/healthz", None, None)
            if status == 200:
                return
        time.sleep(0.2)
    raise SystemExit("gunicorn did not answer in time; see bench/results/pumping-web.log")


def wait_for_worker(log: Path, process: subprocess.Popen) -> None:
    """Until the worker answers a ping on the broker (this process has the service's settings)."""
    from zeckta.celery import app

    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"celery exited with status {process.returncode}; see {log.relative_to(BASE_DIR)}")
        if app.control.ping(timeout=1.0):
            return
    raise SystemExit(f"celery did not start in time; see {log.relative_to(BASE_DIR)}")


# --- Traffic -------------------------------------------------------------------------------------


def call(port: int, method: str, path: str, key: str | None, body: dict | None) -> tuple[int, dict | None]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = json.dumps(body) if body is not None else None
    if payload is not None:
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        conn.request(method, path, payload, headers)
        response = conn.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, None
    finally:
        conn.close()


class Scheduler:
    """Runs calls at their due times (monotonic seconds) on a thread pool, until none is left."""

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="pumping")
        self.heap: list[tuple[float, int, Callable[[], None]]] = []
        self.cond = threading.Condition()
        self.seq = itertools.count()
        self.running = 0
        self.errors: list[str] = []

    def at(self, due: float, work: Callable[[], None]) -> None:
        with self.cond:
            heapq.heappush(self.heap, (due, next(self.seq), work))
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                while True:
                    if not self.heap and not self.running:
                        return
                    now = time.monotonic()
                    if self.heap and self.heap[0][0] <= now:
                        break
                    self.cond.wait(self.heap[0][0] - now if self.heap else None)
                _, _, work = heapq.heappop(self.heap)
                self.running += 1
            self.pool.submit(self._run_one, work)

    def _run_one(self, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception:
            with self.cond:
                self.errors.append(traceback.format_exc(limit=3))
        finally:
            with self.cond:
                self.running -= 1
                self.cond.notify()


class Replay:
    def __init__(self, *, port: int, sink: Sink, lanes: list[Lane], threads: int) -> None:
        self.port = port
        self.sink = sink
        self.lanes = lanes
        self.scheduler = Scheduler(threads)

    def run(self) -> None:
        t0 = time.monotonic() + 2.0
        epoch0 = time.time() + 2.0
        for lane in self.lanes:
            lane.started = epoch0
            bursts: dict[float, list[Event]] = {}
            for event in lane.plan.events:
                if event.burst:
                    bursts.setdefault(event.at, []).append(event)
                    continue
                due = t0 + event.at / lane.k
                self.scheduler.at(due, functools.partial(self.request, lane, event, due))
            for at, events in bursts.items():
                due = t0 + at / lane.k
                self.scheduler.at(due, functools.partial(self.burst, lane, events, due))
        self.scheduler.run()
        self.scheduler.pool.shutdown()

    def burst(self, lane: Lane, events: list[Event], due: float) -> None:
        with ThreadPoolExecutor(max_workers=ATTACK_A_CONCURRENCY, thread_name_prefix=f"burst-{lane.name}") as pool:
            for event in events:
                pool.submit(self.request, lane, event, due)

    def request(self, lane: Lane, event: Event, due: float) -> None:
        started = time.monotonic()
        sent_at = time.time()
        try:
            status, body = call(
                self.port,
                "POST",
                "/v1/messaging/otp/request",
                lane.key,
                {"dest": event.dest, "src": lane.sender, "purpose": "LOGIN"},
            )
        except OSError as exc:
            status, body = 0, {"code": type(exc).__name__}
        data = (body or {}).get("data") or {}
        answer = {
            "population": event.population,
            "dest": event.dest,
            "at": sent_at - lane.started,  # real seconds from the lane's start
            "status": status,
            "code": (body or {}).get("code", ""),
            "reused": bool(data.get("reused")),
            "late": 0.0 if event.burst else started - due,
            "seconds": time.monotonic() - started,
        }
        with lane.lock:
            lane.answers.append(answer)
            if not event.burst:
                lane.late.append(started - due)
        if status == 200 and not answer["reused"] and event.verify_after is not None:
            session_id = data["sessionId"]
            verify_due = started + event.verify_after / lane.k
            # A user whose SMS is late (an outbox behind a burst) waits for it as long as the code is valid.
            give_up = started + lane.policy["otp_validity_seconds"]
            verify = functools.partial(self.verify, lane, event, session_id, sent_at, max(give_up, verify_due))
            self.scheduler.at(verify_due, verify)

    def verify(self, lane: Lane, event: Event, session_id: str, sent_at: float, give_up: float) -> None:
        """The user reads the code off the phone (the sink) and types it in; an SMS not there yet is looked
        for again shortly (without holding a client thread: an outbox behind a burst must not starve the
        paced calls), until `give_up`."""
        code = self.sink.code_after(lane.sender, event.dest, sent_at)
        if code is None and time.monotonic() < give_up:
            again = functools.partial(self.verify, lane, event, session_id, sent_at, give_up)
            self.scheduler.at(time.monotonic() + 0.25, again)
            return
        if code is None:
            outcome = "NO_SMS"
        else:
            try:
                _, body = call(
                    self.port, "POST", "/v1/messaging/otp/verify", lane.key, {"sessionId": session_id, "code": code}
                )
                outcome = ((body or {}).get("data") or {}).get("status", "NO_ANSWER")
            except OSError as exc:
                outcome = type(exc).__name__
        with lane.lock:
            lane.verifies.append({"population": event.population, "dest": event.dest, "status": outcome})


def wait_for_drain(sink: Sink, lanes: list[Lane]) -> float:
    """Until the sink holds an SMS for every new session answered, or DRAIN_TIMEOUT_SECONDS."""
    started = time.monotonic()
    owed = {lane.sender: sum(1 for a in lane.answers if a["status"] == 200 and not a["reused"]) for lane in lanes}
    while time.monotonic() - started < DRAIN_TIMEOUT_SECONDS:
        if all(len(sink.messages_from(sender)) >= count for sender, count in owed.items()):
            break
        time.sleep(0.5)
    return time.monotonic() - started


# --- Results -------------------------------------------------------------------------------------


def lane_blocks(lane: Lane) -> list[dict]:
    from fraud.models import FraudBlock

    rows = FraudBlock.objects.filter(workspace__slug=lane.slug).order_by("created_at", "id")
    return [
        {
            "scope": row.scope,
            "value": row.value,
            "rule": row.rule,
            "mode": row.mode,
            "at": row.created_at.timestamp() - lane.started,
            "ends": row.ends_at.timestamp() - lane.started,
            "lifted": row.lifted_at.timestamp() - lane.started if row.lifted_at else None,
            "evidence": row.evidence,
        }
        for row in rows
    ]


def covers(block: dict, dest: str) -> bool:
    if block["scope"] == "range":
        return number_range(dest) == block["value"]
    return region_of(dest) == block["value"]


def summarise(lane: Lane, sink: Sink, blocks: list[dict]) -> dict[str, dict]:
    """Per population of the lane: requests, SMS, refusals, the blocks that covered it and when."""
    sent_to = Counter(to for to, _ in sink.messages_from(lane.sender))
    result = {}
    for population in sorted({event.population for event in lane.plan.events}):
        answers = [a for a in lane.answers if a["population"] == population]
        dests = {event.dest for event in lane.plan.events if event.population == population}
        ranges = {number_range(dest) for dest in dests}
        countries = {region_of(dest) for dest in dests}
        hit = [
            b
            for b in blocks
            if (b["scope"] == "range" and b["value"] in ranges) or (b["scope"] == "country" and b["value"] in countries)
        ]
        first_request = min((a["at"] for a in answers), default=0.0)
        first_block = min((b["at"] for b in hit), default=None)
        refused = [a for a in answers if a["status"] == 403 and a["code"] == "DESTINATION_BLOCKED"]
        other = Counter(
            f"{a['status']} {a['code']}".strip()
            for a in answers
            if a["status"] != 200 and not (a["status"] == 403 and a["code"] == "DESTINATION_BLOCKED")
        )
        # What a block in force covered: refused in enforce, what enforce would have refused in shadow.
        covered = sum(
            1
            for a in answers
            if any(covers(b, a["dest"]) and b["at"] <= a["at"] < min(b["ends"], b["lifted"] or b["ends"]) for b in hit)
        )
        verifies = Counter(v["status"] for v in lane.verifies if v["population"] == population)
        result[population] = {
            "requests": len(answers),
            "sessions": sum(1 for a in answers if a["status"] == 200 and not a["reused"]),
            "reused": sum(1 for a in answers if a["status"] == 200 and a["reused"]),
            "sms": sum(count for dest, count in sent_to.items() if dest in dests),
            "refused": len(refused),
            "other": dict(other),
            "covered_by_a_block": covered,
            "first_block_real_seconds": None if first_block is None else first_block - first_request,
            "first_refusal_real_seconds": min(a["at"] for a in refused) - first_request if refused else None,
            "blocks": [f"{b['rule']} ({b['scope']} {b['value']})" for b in hit],
            "verifies": dict(verifies),
        }
    return result


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def others(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} x {what}" for what, count in sorted(counts.items())) or "-"


def first_block_times(summary: dict, population: str, k: float) -> tuple[float | None, float | None]:
    """(service clock, real) seconds from the population's first request to the first block covering it. A
    burst is not compressed (it goes as fast as the service answers): its service time is its real one."""
    real = summary["first_block_real_seconds"]
    if real is None:
        return None, None
    return (real if population == "a" else real * k), real


def render(report: dict) -> str:
    lines = [
        "# SMS-pumping replay (`make pumping`)",
        "",
        f"{report['when']}, git {report['git']}, {report['machine']['cpus']} CPUs; guard: {report['guard']}.",
        "",
    ]
    for phase, k in report["k"].items():
        lines.append(f"- {phase} lanes: K={k:g} ({report['k_why'][phase]})")
    lines += [f"- {note}" for note in report["floored"]]
    lines += [
        "- Times are on the service's clock (real seconds x K), but for the burst (a), which is not compressed.",
        "",
    ]
    described = report["described"]
    for mode in report["modes"]:
        lanes = [lane for lane in report["lanes"] if lane["mode"] == mode]
        populations = {p: (s, lane) for lane in lanes for p, s in lane["populations"].items()}
        lines += [f"## {mode}", ""]
        if mode == "enforce":
            lines += [
                "| attack | SMS sent | SMS refused | time to first block | (real) | blocked by | other answers | "
                "target | met |",
                "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
            ]
        else:
            lines += [
                "| attack | SMS sent | SMS refused | first decision | (real) | decisions recorded | "
                "requests a decision covered | other answers |",
                "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
            ]
        for population in ("a", "b", "c", "d"):
            if population not in populations:
                continue
            summary, lane = populations[population]
            service, real = first_block_times(summary, population, lane["k"])
            cells = [
                f"({population}) {described[population]}",
                str(summary["sms"]),
                str(summary["refused"]),
                duration(service),
                duration(real),
                "; ".join(summary["blocks"]) or "nothing",
            ]
            if mode == "enforce":
                target = TARGETS.get(population)
                cells += [
                    others(summary["other"]),
                    f"<= {target} SMS" if target is not None else "none: no rule of this kind can see it",
                    "-" if target is None else ("yes" if summary["sms"] <= target else "**no**"),
                ]
            else:
                cells += [str(summary["covered_by_a_block"]), others(summary["other"])]
            lines.append("| " + " | ".join(cells) + " |")
        if "legit" in populations:
            summary, _ = populations["legit"]
            entered = sum(summary["verifies"].values())
            approved = summary["verifies"].get("APPROVED", 0)
            covered = "refused (target 0)" if mode == "enforce" else "refused / a decision covered"
            lines += [
                "",
                f"| legitimate users | requests | SMS sent | {covered} | codes entered | approved | blocks touching "
                "them | other answers |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
                f"| {described['legit']} | {summary['requests']} | {summary['sms']} | "
                + (
                    f"{summary['refused']}"
                    if mode == "enforce"
                    else f"{summary['refused']} / {summary['covered_by_a_block']}"
                )
                + f" | {entered} | {approved} | {'; '.join(summary['blocks']) or 'none'} | "
                f"{others(summary['other'])} |",
            ]
        lines.append("")
    lines += [
        "## Decisions, enforce beside shadow",
        "",
        "| lane | rule | scope | value | enforce: after | shadow: after | evidence: sessions, converted, numbers |",
        "| --- | --- | --- | --- | ---: | ---: | --- |",
    ]
    decisions: dict[tuple[str, str, str, str], dict[str, tuple[float, dict]]] = {}
    for lane in report["lanes"]:
        for block in lane["blocks"]:
            key = (lane["phase"], block["rule"], block["scope"], block["value"])
            # Seconds of service clock from the lane's start (the first block of that target in that mode).
            decisions.setdefault(key, {}).setdefault(lane["mode"], (block["at"] * lane["k"], block["evidence"]))
    for (phase, rule, scope, value), modes in sorted(
        decisions.items(), key=lambda item: (item[0][0], min(at for at, _ in item[1].values()))
    ):
        evidence = (modes.get("enforce") or modes["shadow"])[1]
        after = {mode: duration(modes[mode][0]) if mode in modes else "-" for mode in ("enforce", "shadow")}
        lines.append(
            f"| {phase} | {rule} | {scope} | {value} | {after['enforce']} | {after['shadow']} | "
            f"{evidence.get('sessions', '-')}, {evidence.get('converted', '-')}, {evidence.get('numbers', '-')} |"
        )
    if not decisions:
        lines.append("| - | no decision recorded | | | | | |")
    lines += [
        "",
        "(after: from the start of the lane's traffic, on its clock.)",
        "",
        "## The run",
        "",
    ]
    for lane in report["lanes"]:
        lines.append(
            f"- {lane['name']} (`{lane['slug']}`, K={lane['k']:g}): {lane['requests']} requests, "
            f"{lane['sms']} SMS at the sink; paced calls started late by p99 {lane['late_p99']:.2f} s, "
            f"max {lane['late_max']:.2f} s"
        )
    sink = report["sink"]
    lines.append(
        f"- sink: {sink['posts']} POSTs, {sink['duplicates']} duplicates, {sink['bad_auth']} with a wrong token; "
        f"outbox drained {report['drain_seconds']:.1f} s after the last call"
    )
    if report["errors"]:
        lines.append(f"- {len(report['errors'])} client errors (first: {report['errors'][0].splitlines()[-1]})")
    lines += ["", f"Targets: {'met' if report['targets_met'] else '**missed**'}.", ""]
    return "\n".join(lines)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def guard_present() -> str:
    return "present" if (BASE_DIR / "fraud" / "guard.py").exists() else "absent (fraud/guard.py not in this tree)"


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BASE_DIR, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except OSError:
        return ""


@contextlib.contextmanager
def service(env: dict[str, str], args) -> Iterator[int]:
    port = free_port()
    worker_log, web_log = RESULTS_DIR / "pumping-celery.log", RESULTS_DIR / "pumping-web.log"
    celery = str(Path(sys.executable).with_name("celery"))
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    worker = start(
        [
            celery,
            "-A",
            "zeckta",
            "worker",
            "--beat",
            "--loglevel=WARNING",
            f"--concurrency={args.celery_concurrency}",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
        worker_log,
    )
    web = start(
        [
            gunicorn,
            "zeckta.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--timeout",
            "60",
            "--no-control-socket",
        ],
        env,
        web_log,
    )
    try:
        wait_for_server(port, web)
        wait_for_worker(worker_log, worker)
        yield port
    finally:
        stop(web)
        stop(worker)


def main() -> int:
    args = parse_args()
    database_url = os.environ.get("PUMPING_DATABASE_URL", DEFAULT_DATABASE_URL)
    redis_url = os.environ.get("PUMPING_REDIS_URL", DEFAULT_REDIS_URL)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]

    rng = random.Random(args.seed)
    plans = {}
    if "fast" in phases:
        plans["fast"] = fast_plan(rng, b_requests=args.b_requests)
    if "slow" in phases:
        plans["slow"] = slow_plan(rng, hours=args.c_hours)
    ks = {"fast": args.k_fast, "slow": args.k_slow}
    lanes = [Lane(phase=phase, mode=mode, k=ks[phase], plan=plan) for phase, plan in plans.items() for mode in modes]
    for phase, plan in plans.items():
        print(
            f"pumping: {phase} lanes: {len(plan.events)} requests over {duration(plan.end)} of service clock, "
            f"{duration(plan.end / ks[phase])} real (K={ks[phase]:g})",
            flush=True,
        )

    sink = Sink(secrets.token_urlsafe(16))
    sink_port = sink.start()
    env = service_env(
        database_url=database_url,
        redis_url=redis_url,
        sink_url=f"http://127.0.0.1:{sink_port}/sms",
        sink_token=sink.token,
        args=args,
    )
    print(f"pumping: recreating {urlsplit(database_url).path.lstrip('/')}, emptying {redis_url}, migrating ...")
    recreate_database(database_url)
    empty_redis(redis_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
    os.environ.update(env)  # the workspaces are made in this process, with the service's settings
    sys.path.insert(0, str(BASE_DIR))
    import django

    django.setup()
    from django.db import connections

    floored = create_workspaces(lanes)
    for lane in lanes:
        if lane.phase == "fast":
            seed_history(lane)
    connections.close_all()

    with service(env, args) as port:
        # Beat's first runs before the first request: until the rules have written each workspace's country
        # history, country_velocity judges nothing there.
        time.sleep(5.0)
        print(
            f"pumping: service on 127.0.0.1:{port} ({args.workers} gunicorn workers, Celery -c "
            f"{args.celery_concurrency} with beat); replaying ...",
            flush=True,
        )
        replay = Replay(port=port, sink=sink, lanes=lanes, threads=args.threads)
        replay.run()
        drain_seconds = wait_for_drain(sink, lanes)
        # The rules' last run sees the last sessions judged.
        time.sleep(max(1.0, 2 * args.rules_every))
    sink.stop()

    lane_reports = []
    targets_met = True
    for lane in lanes:
        blocks = lane_blocks(lane)
        populations = summarise(lane, sink, blocks)
        for population, summary in populations.items():
            if lane.mode == "enforce" and population in TARGETS and summary["sms"] > TARGETS[population]:
                targets_met = False
            if lane.mode == "enforce" and population == "legit" and summary["refused"]:
                targets_met = False
            if lane.mode != "enforce" and summary["refused"]:
                targets_met = False
        lane_reports.append(
            {
                "name": lane.name,
                "phase": lane.phase,
                "mode": lane.mode,
                "k": lane.k,
                "slug": lane.slug,
                "policy": lane.policy,
                "requests": len(lane.answers),
                "sms": len(sink.messages_from(lane.sender)),
                "late_p99": percentile(lane.late, 0.99),
                "late_max": max(lane.late, default=0.0),
                "blocks": blocks,
                "populations": populations,
            }
        )
    described = {population: text for plan in plans.values() for population, text in plan.described.items()}
    report = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git_revision(),
        "guard": guard_present(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "k": {phase: ks[phase] for phase in plans},
        "k_why": {
            "fast": "legitimate users at 5/s x K with a, b and d; small enough that the service answers on time",
            "slow": f"a day of attack (c) in {duration(DAY_SECONDS * args.c_hours / 24 / args.k_slow)}; "
            f"the conversion rules run every {args.rules_every:g} s",
        },
        "floored": floored,
        "described": described,
        "modes": modes,
        "lanes": lane_reports,
        "sink": {"posts": sink.posts, "duplicates": sink.duplicates, "bad_auth": sink.bad_auth},
        "drain_seconds": drain_seconds,
        "errors": replay.scheduler.errors,
        "targets_met": targets_met,
    }
    markdown = render(report)
    (RESULTS_DIR / "pumping.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (RESULTS_DIR / "pumping.md").write_text(markdown, encoding="utf-8")
    # Every answer (no code is ever in one), for a closer look: bench/results/pumping-answers.jsonl.
    with open(RESULTS_DIR / "pumping-answers.jsonl", "w", encoding="utf-8") as out:
        for lane in lanes:
            for answer in lane.answers:
                out.write(json.dumps({"lane": lane.name, **answer}) + "\n")
            for answer in lane.verifies:
                out.write(json.dumps({"lane": lane.name, **answer}) + "\n")
    print()
    print(markdown)
    print("written: bench/results/pumping.md, pumping.json, pumping-web.log, pumping-celery.log")
    return 0 if targets_met else 1


if __name__ == "__main__":
    sys.exit(main())
