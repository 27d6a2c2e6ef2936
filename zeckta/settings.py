"""Settings for Zeckta OTP, read from the environment (or a `.env` file) with django-environ.

With no environment at all the service runs on embedded defaults: SQLite, tasks run in-process,
SMS printed on the console. Outside DEBUG, SECRET_KEY, OTP_HASH_KEY and ALLOWED_HOSTS are required.
"""

from pathlib import Path
from typing import Any

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# Development-only fallbacks: never used when DEBUG is off (see the check below).
_DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 (refused outside DEBUG, see below)
_DEV_OTP_HASH_KEY = "dev-insecure-otp-hash-key-change-me"

SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
OTP_HASH_KEY = env.str("OTP_HASH_KEY", default=_DEV_OTP_HASH_KEY if DEBUG else "")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"] if DEBUG else [])
# Previous values, comma-separated, while a rotation settles (docs/operations.md, Secrets). Django checks
# sessions and signatures against SECRET_KEY_FALLBACKS; the keys derived from old secrets keep decrypting
# what was encrypted under them (zeckta.crypto). Pending codes are NOT checked against old OTP_HASH_KEYs:
# their digests are compared inside the database function, so those sessions fail until resent or expired.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
OTP_HASH_KEY_FALLBACKS = env.list("OTP_HASH_KEY_FALLBACKS", default=[])

if not DEBUG:
    _missing = [name for name, value in [("SECRET_KEY", SECRET_KEY), ("OTP_HASH_KEY", OTP_HASH_KEY)] if not value]
    if not ALLOWED_HOSTS:
        _missing.append("ALLOWED_HOSTS")
    if _missing:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"set {', '.join(_missing)} in the environment (required when DEBUG is off)")

INSTALLED_APPS = [
    # django.contrib.admin, with the Zeckta site (branding, dashboard, operator guide) as admin.site.
    "cockpit.apps.ZecktaAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "zeckta",
    "workspaces",
    "senders",
    "webhooks",
    "fraud",
    "otp",
    "relay",
    "twilioverify",
    "cockpit",
]

MIDDLEWARE = [
    # /healthz, /readyz and /metrics, answered before anything below could refuse a probe (Host, HTTPS).
    "zeckta.health.ProbeMiddleware",
    "zeckta.api.middleware.RequestIdMiddleware",
    "zeckta.api.observe.ObserveMiddleware",  # the log context, request metrics, a line for each /v1/ error
    # Before SecurityMiddleware: under /v1/ a bad Host, plain HTTP or an oversized body is answered in the
    # envelope, never with Django's HTML 400 or an HTTPS redirect that comes after the key crossed the wire.
    "zeckta.api.middleware.ApiEdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "zeckta.api.middleware.ApiErrorMiddleware",
    "axes.middleware.AxesMiddleware",  # admin login throttling (below)
]

ROOT_URLCONF = "zeckta.urls"
WSGI_APPLICATION = "zeckta.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Keep connections open between requests: reconnecting costs more than the whole OTP request.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# Off by default: the check is one more round trip (SELECT 1) at the start of every request. Without it,
# after a database restart each web process answers its first request 503 and then reconnects.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
# psycopg's connection pool, off by default: a gunicorn sync worker or a prefork Celery child serves one
# request or task at a time, so CONN_MAX_AGE already keeps its one connection open, and a pool only adds
# a check-out and a check-in per request (docs/operations.md, PostgreSQL). Worth it for threaded processes
# (gunicorn --threads, Celery --pool threads), whose threads then share up to this many connections.
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=0)
# Behind PgBouncer in transaction mode a cursor cannot outlive its transaction: Django then reads
# `.iterator()` querysets client-side (docs/operations.md, PostgreSQL).
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool("DISABLE_SERVER_SIDE_CURSORS", default=False)
if DATABASE_POOL_MAX_SIZE and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": 10,  # seconds a request waits for a free connection before it fails (503)
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses persistent connections with a pool: it keeps them
# Nothing waits on PostgreSQL longer than gunicorn's worker --timeout (30 s, Procfile and deploy/systemd):
# past it gunicorn kills the worker and answers its own 500 page, outside the envelope. Connecting gives up
# after DATABASE_CONNECT_TIMEOUT_SECONDS (libpq counts whole seconds, 2 at least), a statement after
# DATABASE_STATEMENT_TIMEOUT_SECONDS (enforced by the server, sent with the connection: no extra round trip);
# either failure is an OperationalError, which a /v1/ request answers as 503 SERVICE_UNAVAILABLE.
# Housekeeping tasks (purges, the rollup) and `migrate` get their own limits (zeckta.dbtimeouts): a purge of
# a month of sessions may take minutes, an index on a big table longer. DATABASE_STATEMENT_TIMEOUT_SECONDS=0
# sends no limit and sets none per session: behind PgBouncer in transaction mode, which refuses startup
# options and shares server sessions, set it on the role instead (docs/operations.md, PostgreSQL).
DATABASE_CONNECT_TIMEOUT_SECONDS = env.int("DATABASE_CONNECT_TIMEOUT_SECONDS", default=5)
DATABASE_STATEMENT_TIMEOUT_SECONDS = env.float("DATABASE_STATEMENT_TIMEOUT_SECONDS", default=10.0)
DATABASE_HOUSEKEEPING_STATEMENT_TIMEOUT_SECONDS = env.float(
    "DATABASE_HOUSEKEEPING_STATEMENT_TIMEOUT_SECONDS", default=600.0
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options.setdefault("connect_timeout", max(DATABASE_CONNECT_TIMEOUT_SECONDS, 2))  # a URL's own value wins
    # A host that vanished mid-statement (a network cut, a failover) never closes its socket, and its server
    # cannot enforce a statement timeout: TCP keepalives notice after 5 + 3 x 2 = 11 s of silence, and sent
    # data left unacknowledged for 10 s (tcp_user_timeout, in ms) breaks the connection too. A server frozen
    # on a live host is caught by neither: zeckta.api.middleware.envelope_on_worker_abort answers that one.
    _tcp = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
    for _name, _value in {**_tcp, "tcp_user_timeout": 10_000}.items():
        _options.setdefault(_name, _value)
    if DATABASE_STATEMENT_TIMEOUT_SECONDS > 0:
        # Appended to any `options` the URL carries; libpq's startup packet sets it for the whole session.
        _statement_ms = round(DATABASE_STATEMENT_TIMEOUT_SECONDS * 1000)
        _options["options"] = f"{_options.get('options', '')} -c statement_timeout={_statement_ms}".strip()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Served by whitenoise from the service itself, so the admin works under gunicorn without a CDN.
    # Not the manifest storage: that one needs `collectstatic` before any page renders, and without it the
    # admin and /docs/ would answer 500 with DEBUG=False. These files change only with a release.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the app directories when collectstatic has not run (development, tests, a bare deploy).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# The admin's URL prefix, configurable so it is not where scanners look first.
ADMIN_URL = env.str("ADMIN_URL", default="admin/").strip("/") + "/"

# Bodies of API requests are small JSON objects; anything larger is refused with 413 (API.md section 1),
# whatever Content-Length says, chunked bodies included. JSON nested deeper than this is MALFORMED_JSON.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024)
API_MAX_JSON_DEPTH = 32  # levels of objects and arrays
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- Security (production values unless DEBUG) -------------------------------------------------
# Behind a TLS-terminating proxy, `X-Forwarded-Proto: https` counts as TLS. The proxy must overwrite any
# value a client sent; set TRUST_X_FORWARDED_PROTO=False when the service faces clients directly.
TRUST_X_FORWARDED_PROTO = env.bool("TRUST_X_FORWARDED_PROTO", default=True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUST_X_FORWARDED_PROTO else None
# HTTPS only: the admin and docs are redirected, and /v1/ answers 403 HTTPS_REQUIRED (no redirect).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# The Twilio Verify door is refused (403) over plain HTTP by its own views, never redirected: its key has
# already crossed the network by then (API.md section 14, twilioverify.apis).
SECURE_REDIRECT_EXEMPT = [r"^v2/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Admin logins: django-axes locks a username from one address after 5 failures for 15 minutes. Only
# REMOTE_ADDR is read for the address: a client can set X-Forwarded-For to anything.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_ONLY_ADMIN_SITE = True
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
AXES_VERBOSE = False  # its start-up banner would break the one-line output of operator commands

# --- Redis and Celery --------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
# With no broker configured, tasks run in-process so `make run` needs no services.
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
if CELERY_TASK_ALWAYS_EAGER:
    # Eager tasks never reach a broker; naming the in-memory one stops kombu warning about a missing host.
    CELERY_BROKER_URL = "memory://"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
# Acknowledge after the task ran, for brokers with real acknowledgements (RabbitMQ); on Redis the outbox
# sweeper does that job (ack_emulation below).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes Django's database connections before and after every task unless told to reuse them:
# a new PostgreSQL connection per SMS cost more than the send itself. Reconnect every 1000 tasks instead
# (CONN_MAX_AGE and the health check still drop a connection that has gone bad).
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Publishing must never hang a request when the broker is down: one try, then the outbox row waits
# for the sweeper. A refused connection fails at once; a frozen broker costs one socket_timeout (2 s).
# One publish retry would cost three: the retry reconnects (the TCP accept succeeds) and times out twice.
# redis-py already reconnects a pooled connection that a broker restart closed, so nothing is lost.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 0}
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_timeout": 2.0,  # seconds
    "socket_connect_timeout": 1.0,  # seconds
    "max_retries": 1,
    # No unacked-message bookkeeping in Redis (two pipelines per task in the worker's main process): the
    # outbox is what makes delivery reliable. A task lost with its worker leaves its row queued or
    # processing, and the sweeper (every 30 s) publishes it again; the claim keeps that to one send.
    "ack_emulation": False,
}
# Three queues, so that a backlog of one kind of work never waits behind another: SMS sends (the OTP a user
# is waiting for), webhook deliveries (a slow receiver holds a worker up to its timeout) and housekeeping
# (the beat's sweepers and purges; a purge can run for seconds). A worker started without -Q consumes all
# three (`make run`, the tests, one machine); at scale each gets workers of its own (docs/operations.md).
# The names are in otp.delivery and webhooks.delivery too, which publish straight onto them.
CELERY_TASK_QUEUES: dict[str, dict[str, str]] = {"sms": {}, "webhooks": {}, "housekeeping": {}}
CELERY_TASK_DEFAULT_QUEUE = "housekeeping"  # every task not routed below: the beat's periodic ones
CELERY_TASK_ROUTES = {
    "otp.tasks.send_sms": {"queue": "sms"},
    "otp.tasks.drain_sms": {"queue": "sms"},
    "webhooks.tasks.deliver": {"queue": "webhooks"},
}
# Beat sends only while it holds a lock in Redis (zeckta.beat): a second beat, started by mistake or as a
# standby on another machine, waits and takes over within BEAT_LOCK_TTL_SECONDS of the first one dying.
# The schedule's last runs are kept in Redis too, so no beat writes a schedule file.
CELERY_BEAT_SCHEDULER = "zeckta.beat:LockedScheduler"
BEAT_LOCK_TTL_SECONDS = env.int("BEAT_LOCK_TTL_SECONDS", default=30)
# The fraud guard's work from beat (API.md section 13; each workspace's own numbers are in the admin).
# The conversion rules (otp.fraudrules) run this often (seconds): a range or country that stops converting
# is blocked about this long after its sessions are judged.
FRAUD_RULES_INTERVAL_SECONDS = env.float("FRAUD_RULES_INTERVAL_SECONDS", default=10.0)
# Between runs, range_conversion reads only the ranges whose sessions moved since the last run (otp.fraudrules);
# its whole window (a day of sessions) is read on the first run, after a change of a guarded workspace's numbers,
# the safe list or the reviewer numbers, and at least this often (seconds; 0: never otherwise), as a fallback:
# a full run reads the whole day (20-25 s at 330,000 sessions a day, docs/performance.md).
FRAUD_RULES_FULL_EVERY_SECONDS = env.float("FRAUD_RULES_FULL_EVERY_SECONDS", default=3600.0)
# How long a workspace's country history (the countries country_velocity leaves alone) is trusted before
# it is read again from the database (seconds). Until it is first written, country_velocity judges nothing
# in that workspace: the next run of the rules writes it.
FRAUD_HISTORY_REFRESH_SECONDS = env.int("FRAUD_HISTORY_REFRESH_SECONDS", default=300)
# The Redis copy of the active blocks is rewritten from the database this often (seconds), and the copies
# of blocks lifted within FRAUD_MIRROR_LIFTS_SECONDS are dropped again (a lift made while Redis was away).
FRAUD_MIRROR_INTERVAL_SECONDS = env.float("FRAUD_MIRROR_INTERVAL_SECONDS", default=30.0)
FRAUD_MIRROR_LIFTS_SECONDS = 3600
# How often the beat looks for sessions whose fallback to the next channel is due (seconds): a fallback
# after fallbackAfterSeconds comes at most this much later (otp.fallback).
OTP_FALLBACK_SCAN_SECONDS = env.float("OTP_FALLBACK_SCAN_SECONDS", default=2.0)
# Blocks and shadow decisions are deleted this many days after they ended (or were lifted), by the hourly purge
# of old sessions (fraud.services.fraud_blocks_purge). Never less than FRAUD_BLOCK_RETENTION_DAYS_MIN: the API
# lists 30 days of decisions and escalation remembers a block up to 30 days after its end.
FRAUD_BLOCK_RETENTION_DAYS = env.int("FRAUD_BLOCK_RETENTION_DAYS", default=90)
# Task names as registered (otp.delivery's constants; not imported: settings load before any app).
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-outbox": {"task": "otp.tasks.requeue_stale_sms", "schedule": 30.0},
    "purge-old-sessions": {"task": "otp.tasks.purge_old_sessions", "schedule": 3600.0},
    # PostgreSQL's daily partitions of the per-send tables, OTP_PARTITIONS_AHEAD_DAYS ahead (otp.partitions).
    "create-partitions": {"task": "otp.tasks.create_partitions", "schedule": 3600.0},
    "expire-sessions": {"task": "otp.tasks.expire_sessions", "schedule": 30.0},
    "requeue-due-webhooks": {"task": "webhooks.tasks.requeue_due_deliveries", "schedule": 30.0},
    "purge-old-webhooks": {"task": "webhooks.tasks.purge_old_deliveries", "schedule": 3600.0},
    # Test-mode texts hold readable codes: gone within TEST_INBOX_RETENTION_SECONDS plus 15 minutes.
    "purge-test-inbox": {"task": "otp.tasks.purge_test_inbox", "schedule": 900.0},
    # The admin dashboard's rollup: its hours that may still change, and the suspected-pumping list.
    "refresh-traffic-rollup": {"task": "cockpit.tasks.refresh_traffic_rollup", "schedule": 60.0},
    # The fraud guard: the conversion rules and the country history, and the Redis copy of the blocks.
    # A run still queued when the next is due is dropped (`expires`): a run that takes longer than the interval
    # (its scan grows with a day's sessions: docs/performance.md) must not pile its successors up in the queue.
    "fraud-rules": {
        "task": "otp.tasks.fraud_rules",
        "schedule": FRAUD_RULES_INTERVAL_SECONDS,
        "options": {"expires": FRAUD_RULES_INTERVAL_SECONDS},
    },
    "fraud-blocks-mirror": {"task": "otp.tasks.fraud_blocks_mirror", "schedule": FRAUD_MIRROR_INTERVAL_SECONDS},
    # Channel fallback (API.md section 15): the sessions whose fallback to the next channel is due.
    "fall-back-due-sessions": {"task": "otp.tasks.fall_back_due_sessions", "schedule": OTP_FALLBACK_SCAN_SECONDS},
}

# --- Rate limits ------------------------------------------------------------------------------
API_KEY_DEFAULT_TPS = 10  # requests per second per API key
# The most a key may be given (API.md section 6: 10,000); a deployment that needs more raises it here.
API_KEY_MAX_TPS = env.int("API_KEY_MAX_TPS", default=10_000)
# How long a process trusts its cached API keys, workspaces and sender names (zeckta.localcache): a
# revoked key or a suspended workspace is refused everywhere within this time. 0 turns the caches off.
LOCAL_CACHE_SECONDS = env.float("LOCAL_CACHE_SECONDS", default=1.0)
# On PostgreSQL, an OTP request and a verify each run as one database function call (otp/sql/);
# the tests turn this off to run the Python version of the same rules, which SQLite always uses.
OTP_DATABASE_FUNCTIONS = True
# Where per-key request counts live: `redis` (shared by every process) or `locmem` (this process only,
# for `make run` without Redis).
RATE_LIMIT_BACKEND = env.str("RATE_LIMIT_BACKEND", default="redis" if REDIS_URL else "locmem")
RATE_LIMIT_MAX_COOLDOWN_SECONDS = env.int("RATE_LIMIT_MAX_COOLDOWN_SECONDS", default=300)
# Requests without a valid key, per client address (REMOTE_ADDR): past this many failures in a fixed
# one-minute window, that address gets 429 until the window ends. A valid key is never held back by it.
AUTH_FAILURE_LIMIT_PER_MINUTE = env.int("AUTH_FAILURE_LIMIT_PER_MINUTE", default=60)

# --- OTP policy defaults (each workspace can change its own in the admin) ----------------------
OTP_DEFAULT_VALIDITY_SECONDS = 300
OTP_DEFAULT_MAX_ATTEMPTS = 5
OTP_DEFAULT_CODE_LENGTH = 6
OTP_DEFAULT_DESTINATION_LIMIT = 3  # new OTP SMS to one destination ...
OTP_DEFAULT_DESTINATION_WINDOW_SECONDS = 600  # ... per this many seconds
OTP_RESEND_COOLDOWN_SECONDS = 30  # before a session's first resend; doubles after each (30, 60, 120 s)
OTP_MAX_RESENDS = 3  # per session
# Wrong codes one destination may receive across all its sessions in a rolling 24 h: a new session never
# buys a fresh guess budget.
OTP_DEFAULT_WRONG_CODE_BUDGET = 20
OTP_WRONG_CODE_WINDOW_SECONDS = 24 * 3600
# New OTP SMS per workspace per UTC day for workspaces created from now on; 0 = no cap.
OTP_DEFAULT_DAILY_SMS_CAP = env.int("OTP_DEFAULT_DAILY_SMS_CAP", default=10_000)
OTP_SESSION_RETENTION_DAYS = env.int("OTP_SESSION_RETENTION_DAYS", default=30)
# PostgreSQL keeps the per-send tables by day (otp.partitions): beat creates this many days of partitions
# ahead of today, hourly. A row for a day with no partition is refused, so this is the margin beat may be down.
# Whether migration otp 0021 turns the per-send tables into daily partitions (PostgreSQL): on by default, the
# hot paths calling each day's functions that name its partitions (otp.day_functions). Off keeps plain
# tables, which `manage.py partition_tables` converts later. Read only by that migration: set it before
# `migrate` reaches 0021.
OTP_PARTITION_BY_DAY = env.bool("OTP_PARTITION_BY_DAY", default=True)
OTP_PARTITIONS_AHEAD_DAYS = env.int("OTP_PARTITIONS_AHEAD_DAYS", default=7)
# Test mode (API.md section 10): how long a test SMS stays readable in the test inbox, then is deleted.
TEST_INBOX_RETENTION_SECONDS = 24 * 3600
# A relayed SMS (POST /v1/messaging/sms) still in the outbox this many seconds after it was accepted is
# not sent: the code it carries, made by the client, is dead by then (as an OTP SMS dies with its session).
RELAY_SMS_VALIDITY_SECONDS = 600
SUPABASE_HOOKS_PER_WORKSPACE = 10  # per mode (live, test), as webhook endpoints

# --- SMS delivery ------------------------------------------------------------------------------
SMS_HTTP_URL = env.str("SMS_HTTP_URL", default="")
# `console` in development; a configured gateway URL means `http`. `check --deploy` fails on console, file and locmem.
SMS_BACKEND = env.str("SMS_BACKEND", default="http" if SMS_HTTP_URL and not DEBUG else "console")
SMS_FILE_PATH = env.str("SMS_FILE_PATH", default=str(BASE_DIR / "sms-outbox.jsonl"))
SMS_HTTP_TOKEN = env.str("SMS_HTTP_TOKEN", default="")
SMS_HTTP_TIMEOUT = env.float("SMS_HTTP_TIMEOUT", default=5.0)  # seconds
# The `http` backend's receipts (API.md section 11) carry this as a Bearer token or `?token=`.
SMS_HTTP_RECEIPT_TOKEN = env.str("SMS_HTTP_RECEIPT_TOKEN", default="")
# The service's external base URL: the receipt URLs given to providers, and the URL a provider signed
# (Twilio signs the full URL). Empty: receipts URLs are not sent, signatures are checked on the request's URL.
PUBLIC_URL = env.str("PUBLIC_URL", default="").rstrip("/")
# Key for route credentials at rest; derived from SECRET_KEY/OTP_HASH_KEY when unset.
ROUTE_ENCRYPTION_KEY = env.str("ROUTE_ENCRYPTION_KEY", default="")
ROUTE_ENCRYPTION_KEY_FALLBACKS = env.list("ROUTE_ENCRYPTION_KEY_FALLBACKS", default=[])  # previous keys, still read
SMS_MAX_SEND_ATTEMPTS = env.int("SMS_MAX_SEND_ATTEMPTS", default=6)  # gateway calls per message
SMS_RETRY_BACKOFF_SECONDS = env.float("SMS_RETRY_BACKOFF_SECONDS", default=2.0)  # first retry delay
SMS_RETRY_BACKOFF_MAX_SECONDS = env.float("SMS_RETRY_BACKOFF_MAX_SECONDS", default=60.0)
# An outbox row still `queued` this long after its due time was never picked up (broker down,
# lost publish): the sweeper enqueues it again.
SMS_STALE_AFTER_SECONDS = env.int("SMS_STALE_AFTER_SECONDS", default=30)
# A row left `processing` this long belongs to a worker that died mid-send: it may be claimed again.
SMS_PROCESSING_LEASE_SECONDS = env.int("SMS_PROCESSING_LEASE_SECONDS", default=120)
# Gateway calls a worker process keeps in flight (otp.delivery.sms_drain): threads making HTTP calls only,
# so they cost no database connection. A provider answering in 250 ms: ~800 SMS/s per process at 200.
SMS_SEND_CONCURRENCY = env.int("SMS_SEND_CONCURRENCY", default=200)
# A request asks for a drain at most once per this window (milliseconds; the key's expiry in Redis): the
# bound on what one lost publish can hold up until the sweeper, not a delay (the first request publishes).
SMS_DRAIN_NUDGE_MS = env.int("SMS_DRAIN_NUDGE_MS", default=20)
# A drain with calls in flight looks for new due rows this often (milliseconds).
SMS_DRAIN_POLL_MS = env.int("SMS_DRAIN_POLL_MS", default=50)
# A drain stops claiming after this long (seconds) and hands a backlog to a fresh task: it must end, calls
# included (each within its route's timeout), inside SMS_TASK_SOFT_TIME_LIMIT_SECONDS.
SMS_DRAIN_SECONDS = env.float("SMS_DRAIN_SECONDS", default=15.0)
# Key for the encrypted retry copy of the SMS text; derived from SECRET_KEY/OTP_HASH_KEY when unset.
SMS_ENCRYPTION_KEY = env.str("SMS_ENCRYPTION_KEY", default="")
SMS_ENCRYPTION_KEY_FALLBACKS = env.list("SMS_ENCRYPTION_KEY_FALLBACKS", default=[])  # previous keys, still read

# --- Event webhooks (API.md section 9) ----------------------------------------------------------
# Hosts (no port) of receivers inside the operator's own network: they may use plain http and are exempt
# from the refusal of private, loopback and link-local addresses. Comma-separated; empty by default.
WEBHOOK_ALLOWED_HOSTS = [host.lower() for host in env.list("WEBHOOK_ALLOWED_HOSTS", default=[])]
# Key for the signing secrets at rest; derived from SECRET_KEY/OTP_HASH_KEY when unset.
WEBHOOK_ENCRYPTION_KEY = env.str("WEBHOOK_ENCRYPTION_KEY", default="")
WEBHOOK_ENCRYPTION_KEY_FALLBACKS = env.list("WEBHOOK_ENCRYPTION_KEY_FALLBACKS", default=[])  # previous keys, still read
WEBHOOK_MAX_ENDPOINTS_PER_WORKSPACE = env.int("WEBHOOK_MAX_ENDPOINTS_PER_WORKSPACE", default=10)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)  # for the whole call (not per read)
# Seconds before each retry (with +-20 % jitter); the last one repeats until the retry window closes.
WEBHOOK_RETRY_DELAYS_SECONDS = (5, 30, 120, 600, 3600, 3 * 3600)
WEBHOOK_RETRY_WINDOW_SECONDS = env.int("WEBHOOK_RETRY_WINDOW_SECONDS", default=24 * 3600)
# How long the previous secret keeps signing beside the new one after a rotation.
WEBHOOK_SECRET_OVERLAP_SECONDS = 24 * 3600
# A delivery due this long ago that no task took (broker down, a retry left to the sweeper) is enqueued
# by the sweeper; one `sending` this long belongs to a worker that died mid-call and may be claimed again.
WEBHOOK_STALE_AFTER_SECONDS = 30
WEBHOOK_PROCESSING_LEASE_SECONDS = 60
WEBHOOK_RETENTION_DAYS = env.int("WEBHOOK_RETENTION_DAYS", default=7)  # finished deliveries are purged after

# --- Task time limits (seconds) ------------------------------------------------------------------
# Every task has a hard limit, past which the worker kills the process running it (SIGKILL), and a soft
# one a little before, which raises SoftTimeLimitExceeded inside the task so that it unwinds: its
# transaction rolls back, and an SMS or webhook call cut by it is recorded as a time-out and retried.
# Each is well above the longest legitimate run: an SMS or webhook task makes one outbound call, which
# its own total deadline ends first (the route's timeout, WEBHOOK_TIMEOUT_SECONDS), plus a few statements;
# the beat's purges and rollups may run for minutes on a large database.
# A killed SMS or webhook task leaves its row claimed: the sweeper hands it out again once the lease is
# over, and the claim's conditional UPDATE lets one worker send it, once, with the same reference. Celery
# writes the limits into each message from the publisher's settings (the web and beat processes): every
# process reads the same environment.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
SMS_TASK_SOFT_TIME_LIMIT_SECONDS = env.int("SMS_TASK_SOFT_TIME_LIMIT_SECONDS", default=45)
SMS_TASK_TIME_LIMIT_SECONDS = env.int("SMS_TASK_TIME_LIMIT_SECONDS", default=60)
WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS = env.int("WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS", default=20)
# Receiver calls a `webhooks` worker process keeps in flight (webhooks.delivery.webhook_drain): threads making
# HTTP calls only, no database connection each.
WEBHOOK_SEND_CONCURRENCY = env.int("WEBHOOK_SEND_CONCURRENCY", default=100)
WEBHOOK_TASK_TIME_LIMIT_SECONDS = env.int("WEBHOOK_TASK_TIME_LIMIT_SECONDS", default=30)
# By registered name (otp.delivery's and webhooks.delivery's constants; not imported: apps load later).
CELERY_TASK_ANNOTATIONS = {
    "otp.tasks.send_sms": {
        "soft_time_limit": SMS_TASK_SOFT_TIME_LIMIT_SECONDS,
        "time_limit": SMS_TASK_TIME_LIMIT_SECONDS,
    },
    "otp.tasks.drain_sms": {
        "soft_time_limit": SMS_TASK_SOFT_TIME_LIMIT_SECONDS,
        "time_limit": SMS_TASK_TIME_LIMIT_SECONDS,
    },
    "webhooks.tasks.deliver": {
        "soft_time_limit": WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS,
        "time_limit": WEBHOOK_TASK_TIME_LIMIT_SECONDS,
    },
}
# Refused at start-up: a soft limit at or over its hard one (the prefork pool starts the hard limit's clock
# when the soft limit fires, so the hard one would come later than it says), and a hard limit at or over the
# lease of the rows its task claims (a row is handed out again once its lease is over: the task killed at
# its limit must be gone by then).
_time_limit_problems = [
    f"{name} ({value} s) must be below {bound_name} ({bound} s)"
    for name, value, bound_name, bound in (
        ("CELERY_TASK_SOFT_TIME_LIMIT", CELERY_TASK_SOFT_TIME_LIMIT, "CELERY_TASK_TIME_LIMIT", CELERY_TASK_TIME_LIMIT),
        (
            "SMS_TASK_SOFT_TIME_LIMIT_SECONDS",
            SMS_TASK_SOFT_TIME_LIMIT_SECONDS,
            "SMS_TASK_TIME_LIMIT_SECONDS",
            SMS_TASK_TIME_LIMIT_SECONDS,
        ),
        (
            "WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS",
            WEBHOOK_TASK_SOFT_TIME_LIMIT_SECONDS,
            "WEBHOOK_TASK_TIME_LIMIT_SECONDS",
            WEBHOOK_TASK_TIME_LIMIT_SECONDS,
        ),
        (
            "SMS_TASK_TIME_LIMIT_SECONDS",
            SMS_TASK_TIME_LIMIT_SECONDS,
            "SMS_PROCESSING_LEASE_SECONDS",
            SMS_PROCESSING_LEASE_SECONDS,
        ),
        (
            "WEBHOOK_TASK_TIME_LIMIT_SECONDS",
            WEBHOOK_TASK_TIME_LIMIT_SECONDS,
            "WEBHOOK_PROCESSING_LEASE_SECONDS",
            WEBHOOK_PROCESSING_LEASE_SECONDS,
        ),
    )
    if value >= bound
]
if _time_limit_problems:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("; ".join(_time_limit_problems))

# --- The operators' cockpit (the admin dashboard) ------------------------------------------------
# Each run of the rollup (every minute) rebuilds the last hours; every quarter of an hour one rebuilds all
# the hours whose sessions may still change: a session can be approved up to its validity (at most 24 h)
# after it was made, and receipts come later still. A receipt later than that is not counted.
COCKPIT_ROLLUP_RECENT_HOURS = 2
COCKPIT_ROLLUP_SETTLE_HOURS = env.int("COCKPIT_ROLLUP_SETTLE_HOURS", default=48)
COCKPIT_ROLLUP_SETTLE_EVERY_SECONDS = 900
# The first run (or one after beat stood still) rebuilds this far back; never more than sessions are kept.
COCKPIT_ROLLUP_BACKFILL_DAYS = min(31, OTP_SESSION_RETENTION_DAYS)
# A run rebuilds this many hours to a transaction, oldest first; beat's runs stop after COCKPIT_ROLLUP_RUN_SECONDS
# (the next minute's run goes on), so a month's backfill on a large database is spread over several runs.
COCKPIT_ROLLUP_CHUNK_HOURS = 6
COCKPIT_ROLLUP_RUN_SECONDS = env.float("COCKPIT_ROLLUP_RUN_SECONDS", default=120.0)
COCKPIT_ROLLUP_RETENTION_DAYS = env.int("COCKPIT_ROLLUP_RETENTION_DAYS", default=400)  # rollup rows kept
# SMS pumping: over this window, destinations and number ranges with at least this many SMS and at most this
# share of them approved are flagged. A range is a number with its last COCKPIT_RANGE_HIDDEN_DIGITS hidden.
COCKPIT_PUMPING_WINDOW_HOURS = 24
COCKPIT_PUMPING_MIN_SMS_PER_DESTINATION = env.int("COCKPIT_PUMPING_MIN_SMS_PER_DESTINATION", default=5)
COCKPIT_PUMPING_MIN_SMS_PER_RANGE = env.int("COCKPIT_PUMPING_MIN_SMS_PER_RANGE", default=20)
COCKPIT_PUMPING_MAX_CONVERSION = env.float("COCKPIT_PUMPING_MAX_CONVERSION", default=0.2)  # approved ÷ SMS
COCKPIT_RANGE_HIDDEN_DIGITS = 3  # a range of 1,000 numbers
COCKPIT_PUMPING_LIST_LIMIT = 20  # destinations, and ranges, kept per run (the most unconverted SMS first)

# --- REST framework and OpenAPI ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["workspaces.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["workspaces.authentication.HasWorkspace"],
    "DEFAULT_THROTTLE_CLASSES": ["workspaces.throttling.ApiKeyRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["zeckta.api.parsers.JsonObjectParser"],
    "DEFAULT_RENDERER_CLASSES": ["zeckta.api.renderers.EnvelopeJSONRenderer"],
    "EXCEPTION_HANDLER": "zeckta.api.handlers.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Zeckta OTP API",
    "DESCRIPTION": "One-time passwords over SMS: request, verify and inspect OTP sessions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The document and the docs page are public: no key needed to read how to use a key.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SECURITY": [{"ApiKey": []}],
    # The same choices in several components (the relay's view of an SMS has a session's delivery fields):
    # named once, as they were named when only the OTP operations used them.
    "ENUM_NAME_OVERRIDES": {
        "ErrorCode": "zeckta.api.schema.ERROR_CODES",
        "DeliveryStatusEnum": "otp.serializers.SMS_STATUSES",
        "OtpRequestInputPurposeEnum": "otp.models.Purpose.choices",
        "OtpSessionDataPurposeEnum": "otp.models.Purpose.values",
    },
    # Every operation is tagged with its resource: generated clients group their calls by tag
    # (openapi-python-client: `api.otp.otp_request`), and the docs page by section.
    "TAGS": [
        {"name": "otp", "description": "Request, verify, read, resend and cancel one-time passwords."},
        {"name": "sender-names", "description": "The names your SMS come from: requested here, approved by staff."},
        {"name": "webhooks", "description": "Your endpoints for signed OTP events (Standard Webhooks)."},
        {"name": "fraud", "description": "The fraud guard's blocks of ranges and countries: list and lift them."},
        {"name": "test-inbox", "description": "The SMS test keys sent, codes included: for your end-to-end tests."},
        {"name": "receipts", "description": "SMS providers' delivery receipts: called by providers, not clients."},
        {"name": "relay", "description": "Send a text you wrote (code included) through the same routes and limits."},
        {"name": "hooks", "description": "Supabase Auth Send SMS hooks: Supabase posts its codes, we send them."},
    ],
}

# --- Health, metrics and logs (API.md section 12) -------------------------------------------------
# Bearer token /metrics requires when set; without it, and with DEBUG off, only loopback clients may scrape.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Where the gunicorn and Celery processes of this machine keep their metrics for /metrics to add up
# (zeckta.multiprocess; each process group has a directory of its own inside, wiped when it starts).
# Default: a directory of this user and checkout under the system's temporary directory.
METRICS_DIR = env.str("METRICS_DIR", default="")
# /readyz's deadline for all its checks together: a probe answers within it even if a dependency hangs.
HEALTH_CHECK_TIMEOUT_SECONDS = env.float("HEALTH_CHECK_TIMEOUT_SECONDS", default=1.5)

# --- Logging: every line of a request carries its requestId ------------------------------------
# `json`: one JSON object a line (time, level, logger, message, requestId, workspace, keyPrefix, route);
# `text`: for a terminal.
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
if LOG_FORMAT not in ("json", "text"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "zeckta.api.logging.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [requestId=%(request_id)s] %(message)s"},
        "json": {"()": "zeckta.api.logging.JsonLogFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["request_id"], "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}
