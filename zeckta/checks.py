"""System checks for a deployment (`manage.py check --deploy`): with DEBUG=False, each is an error.

They catch the settings that work in development and are unsafe in production: no broker (tasks would
run inside requests and rate limits per process), SQLite, guessable secrets, SMS texts in clear text on
the network, and SMS backends that only print or keep the codes. A deployment without Redis, where the
fraud guard cannot run, is a warning (zeckta.W003).

No METRICS_TOKEN is not among them: without it /metrics answers loopback clients only, which is safe
(docs/deploy.md says what to do behind a proxy on the same machine).
"""

import ipaddress
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

# Backends that keep codes where operators read them (stdout, a file) or nowhere (memory): development only.
# Registered by the senders app, whose gateway classes say which they are (`development_only`).
DEVELOPMENT_SMS_BACKENDS: frozenset[str] = frozenset()
SECRET_MIN_LENGTH = 32  # characters
SECRET_SETTINGS = ("SECRET_KEY", "OTP_HASH_KEY")
# Secrets the service may be given on top, held to the same rule when they are set. Not the providers'
# own tokens (SMS_HTTP_TOKEN): their length is the provider's choice.
OPTIONAL_SECRET_SETTINGS = (
    "SMS_ENCRYPTION_KEY",
    "ROUTE_ENCRYPTION_KEY",
    "WEBHOOK_ENCRYPTION_KEY",
    "METRICS_TOKEN",
    "SMS_HTTP_RECEIPT_TOKEN",
)
# Values nobody should deploy with: the development defaults (settings.py) and, read from the file itself,
# whatever .env.example suggests.
KNOWN_PLACEHOLDERS = frozenset({"dev-insecure-secret-key-change-me", "dev-insecure-otp-hash-key-change-me"})
# What gives a value away as copied from documentation rather than generated: "change me", "replace me",
# and the prefix of the key `django-admin startproject` writes.
PLACEHOLDER_WORDS = re.compile(r"change[-_ ]?me|replace[-_ ]?me|^django-insecure-", re.IGNORECASE)

# Names of the enabled provider routes whose backend really sends, when the database may be read
# (`check --deploy --database default`): registered by the senders app, which owns routes.
production_routes_reader: Callable[[], list[str]] | None = None
# The enabled routes whose receipt URL (PUBLIC_URL + /v1/webhooks/sms/<routeId>) their provider refuses
# (Vonage: over 100 characters), each as one sentence; registered by the senders app too.
receipt_url_problems_reader: Callable[[], list[str]] | None = None


def _env_example_values(path: Path) -> set[str]:
    if not path.exists():
        return set()
    values = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name, _, value = line.lstrip("# ").partition("=")
        if name.strip() in {*SECRET_SETTINGS, "SMS_ENCRYPTION_KEY"} and value.strip():
            values.add(value.split("#")[0].strip())
    return values


def _is_loopback(host: str | None) -> bool:
    if host is None or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register(Tags.security, deploy=True)
def check_production_settings(app_configs: Iterable[Any] | None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    if settings.CELERY_TASK_ALWAYS_EAGER:
        errors.append(
            Error(
                "No broker: SMS would be sent inside each request and the per-key rate limit counted per process.",
                hint="Set REDIS_URL (or CELERY_BROKER_URL) and run `celery -A zeckta worker`.",
                id="zeckta.E001",
            )
        )
    if "sqlite" in settings.DATABASES["default"]["ENGINE"]:
        errors.append(
            Error(
                "The database is SQLite: one writer at a time, no advisory locks, no concurrent workers.",
                hint="Set DATABASE_URL=postgres://... (PostgreSQL).",
                id="zeckta.E002",
            )
        )
    placeholders = KNOWN_PLACEHOLDERS | _env_example_values(settings.BASE_DIR / ".env.example")
    optional = [name for name in OPTIONAL_SECRET_SETTINGS if getattr(settings, name, "")]
    for name in (*SECRET_SETTINGS, *optional):
        value = getattr(settings, name)
        if len(value) < SECRET_MIN_LENGTH or value in placeholders or PLACEHOLDER_WORDS.search(value):
            errors.append(
                Error(
                    f"{name} is shorter than {SECRET_MIN_LENGTH} characters or a published placeholder.",
                    hint=f"Generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))' and set {name}.",
                    id="zeckta.E003",
                )
            )
    gateway = urlsplit(settings.SMS_HTTP_URL) if settings.SMS_HTTP_URL else None
    if gateway is not None and gateway.scheme == "http" and not _is_loopback(gateway.hostname):
        errors.append(
            Error(
                "SMS_HTTP_URL is plain http:// to another machine: every OTP code would cross the network readable.",
                hint="Use the gateway's https:// URL (plain http only to a loopback relay).",
                id="zeckta.E004",
            )
        )
    if settings.SMS_BACKEND in DEVELOPMENT_SMS_BACKENDS:
        errors.append(_development_default_route(kwargs.get("databases")))
    databases = kwargs.get("databases")
    if receipt_url_problems_reader is not None and databases and "default" in databases:
        errors.extend(
            Error(
                f"{problem}: every SMS through it would be refused and fail over.",
                hint="Shorten PUBLIC_URL (Vonage takes a callback URL of at most 100 characters).",
                id="zeckta.E006",
            )
            for problem in receipt_url_problems_reader()
        )
    if not settings.REDIS_URL:
        # A broker of another kind (CELERY_BROKER_URL=amqp://...) passes E001, but the guard needs Redis.
        errors.append(
            CheckWarning(
                "No REDIS_URL: the fraud guard cannot run, so no live request is checked against its blocks or "
                "velocity rules and SMS pumping is not stopped, whatever each workspace's fraud guard mode says.",
                hint="Set REDIS_URL=redis://... (also the broker and the per-key rate limit unless set apart).",
                id="zeckta.W003",
            )
        )
    if settings.LOCAL_CACHE_SECONDS > 1:
        errors.append(
            CheckWarning(
                f"LOCAL_CACHE_SECONDS is {settings.LOCAL_CACHE_SECONDS}: a revoked API key or a suspended workspace "
                "stays usable that long on processes that cached it.",
                hint="Keep it at 1 second or less (the default).",
                id="zeckta.W001",
            )
        )
    return errors


def _development_default_route(databases: Iterable[str] | None) -> CheckMessage:
    """SMS_BACKEND is the last route of every SMS. As the only one it is an error; behind provider routes
    (admin, `add_route`) a warning: an SMS to a country they do not serve, or failing over from them,
    would still have its code printed or kept. Routes are read only when the check may use the database."""
    routes = production_routes_reader() if production_routes_reader and databases and "default" in databases else []
    if routes:
        return CheckWarning(
            f"SMS_BACKEND is {settings.SMS_BACKEND!r}: behind the routes {', '.join(routes)}, SMS to countries they "
            "do not serve, or failing over from them, would have their codes printed or kept, never sent.",
            hint="Make a route serve every country, or set SMS_BACKEND=http with SMS_HTTP_URL.",
            id="zeckta.W002",
        )
    return Error(
        f"SMS_BACKEND is {settings.SMS_BACKEND!r}: OTP codes would be printed or kept, never sent.",
        hint="Set SMS_BACKEND=http with SMS_HTTP_URL (and SMS_HTTP_TOKEN) for your SMS gateway; with provider "
        "routes configured in the admin, run `check --deploy --database default` to have them counted.",
        id="zeckta.E005",
    )
