"""System checks for a deployment (`manage.py check --deploy`): with DEBUG=False, each is an error.

They catch the settings that work in development and are unsafe in production: no broker (tasks would
run inside requests and rate limits per process), SQLite, guessable secrets, SMS texts in clear text on
the network, and SMS backends that only print or keep the codes.
"""

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

# Backends that keep codes where operators read them (stdout, a file) or nowhere (memory): development only.
DEVELOPMENT_SMS_BACKENDS = frozenset({"console", "file", "locmem"})
SECRET_MIN_LENGTH = 32  # characters
SECRET_SETTINGS = ("SECRET_KEY", "OTP_HASH_KEY")
# Values nobody should deploy with: the development defaults (settings.py) and, read from the file itself,
# whatever .env.example suggests.
KNOWN_PLACEHOLDERS = frozenset({"dev-insecure-secret-key-change-me", "dev-insecure-otp-hash-key-change-me"})


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
        errors.append(Error(
            "No broker: SMS would be sent inside each request and the per-key rate limit counted per process.",
            hint="Set REDIS_URL (or CELERY_BROKER_URL) and run `celery -A zeckta worker`.",
            id="zeckta.E001",
        ))
    if "sqlite" in settings.DATABASES["default"]["ENGINE"]:
        errors.append(Error(
            "The database is SQLite: one writer at a time, no advisory locks, no concurrent workers.",
            hint="Set DATABASE_URL=postgres://... (PostgreSQL).",
            id="zeckta.E002",
        ))
    placeholders = KNOWN_PLACEHOLDERS | _env_example_values(settings.BASE_DIR / ".env.example")
    for name in SECRET_SETTINGS:
        value = getattr(settings, name)
        if len(value) < SECRET_MIN_LENGTH or value in placeholders:
            errors.append(Error(
                f"{name} is shorter than {SECRET_MIN_LENGTH} characters or a published placeholder.",
                hint=f"Generate one: python -c 'import secrets; print(secrets.token_urlsafe(48))' and set {name}.",
                id="zeckta.E003",
            ))
    gateway = urlsplit(settings.SMS_HTTP_URL) if settings.SMS_HTTP_URL else None
    if gateway is not None and gateway.scheme == "http" and not _is_loopback(gateway.hostname):
        errors.append(Error(
            "SMS_HTTP_URL is plain http:// to another machine: every OTP code would cross the network readable.",
            hint="Use the gateway's https:// URL (plain http only to a loopback relay).",
            id="zeckta.E004",
        ))
    if settings.SMS_BACKEND in DEVELOPMENT_SMS_BACKENDS:
        errors.append(Error(
            f"SMS_BACKEND is {settings.SMS_BACKEND!r}: OTP codes would be printed or kept, never sent.",
            hint="Set SMS_BACKEND=http with SMS_HTTP_URL (and SMS_HTTP_TOKEN) for your SMS gateway.",
            id="zeckta.E005",
        ))
    if settings.LOCAL_CACHE_SECONDS > 1:
        errors.append(CheckWarning(
            f"LOCAL_CACHE_SECONDS is {settings.LOCAL_CACHE_SECONDS}: a revoked API key or a suspended workspace "
            "stays usable that long on processes that cached it.",
            hint="Keep it at 1 second or less (the default).",
            id="zeckta.W001",
        ))
    return errors
