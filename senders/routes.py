"""Provider routes: creating them (credentials encrypted), choosing them for an SMS, and their rate caps.

An SMS to a country takes, in order, the enabled routes that serve it (lowest priority number first) and
then the default route, which is the SMS_* settings (API.md sections 7 and 11): with no route configured,
everything works as before.
"""

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from cryptography.fernet import InvalidToken, MultiFernet
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction

from senders.errors import RouteExists, RouteNotFound
from senders.gateways import BACKENDS, SmsGateway, backend_class, get_gateway
from senders.models import Route
from workspaces.audit import SYSTEM_ACTOR, audit_record
from workspaces.models import AuditEvent, Workspace
from workspaces.services import parse_countries
from zeckta.channels import Channel
from zeckta.crypto import fernet_for
from zeckta.errors import ValidationFailed

logger = logging.getLogger(__name__)

# The backends that print or keep codes (their classes say so): never counted as a production route.
DEVELOPMENT_BACKENDS = frozenset(name for name in BACKENDS if backend_class(name).development_only)
ROUTES_CACHE_SECONDS = 2.0  # how long a worker keeps the route list: an admin change reaches it that fast
RECEIPT_PATH = "/v1/webhooks/sms/"  # + the route's key: otp/receipt_urls.py routes it to the receipt view
DEFAULT_ROUTE_KEY = "default"  # the receipt URL's routeId, and the route name shown, of the SMS_* settings
_ROUTE_SETTINGS_PURPOSE = b"route-settings-v1"


@dataclass(frozen=True)
class RouteChoice:
    """One route an SMS may take: a configured Route, or the default route (route is None)."""

    key: str  # str(Route.public_id), or DEFAULT_ROUTE_KEY
    name: str
    backend: str
    route: Route | None
    rate_per_second: int | None = None

    def gateway(self) -> SmsGateway:
        if self.route is None:
            return get_gateway()
        # The route's key goes along: the smpp backend names its bind's job queue with it.
        return get_gateway(self.backend, {**route_settings(self.route), "_route_key": self.key})

    @property
    def takes_receipts(self) -> bool:
        """Whether a receipt can arrive for it: the development backends and a tokenless default `http`
        route take none, so their sends need not look for early receipts."""
        if self.backend in DEVELOPMENT_BACKENDS:
            return False
        return self.route is not None or self.backend != "http" or bool(settings.SMS_HTTP_RECEIPT_TOKEN)

    def receipt_url(self) -> str:
        return receipt_url(self.key) if settings.PUBLIC_URL else ""


def receipt_url(route_key: str) -> str:
    """Where the providers of a route post its receipts (API.md section 11): PUBLIC_URL + the receipt path."""
    return f"{settings.PUBLIC_URL}{RECEIPT_PATH}{route_key}"


def default_route() -> RouteChoice:
    return RouteChoice(key=DEFAULT_ROUTE_KEY, name=DEFAULT_ROUTE_KEY, backend=settings.SMS_BACKEND, route=None)


_routes_cache: tuple[float, list[Route]] | None = None


def _enabled_routes() -> list[Route]:
    """The enabled routes in priority order, read at most every ROUTES_CACHE_SECONDS per process."""
    global _routes_cache
    now = time.monotonic()
    if _routes_cache is None or now - _routes_cache[0] > ROUTES_CACHE_SECONDS:
        _routes_cache = (now, list(Route.objects.filter(enabled=True).order_by("priority", "name")))
    return _routes_cache[1]


def production_route_names() -> list[str]:
    """The enabled routes whose backend really sends, for `check --deploy --database default`; none when the
    database cannot be read (the check then counts SMS_BACKEND alone)."""
    try:
        return list(
            Route.objects.filter(enabled=True)
            .exclude(backend__in=DEVELOPMENT_BACKENDS)
            .order_by("priority", "name")
            .values_list("name", flat=True)
        )
    except DatabaseError:
        return []


def routes_changed() -> None:
    """Forgets this process's route list (the others see a change within ROUTES_CACHE_SECONDS)."""
    global _routes_cache
    _routes_cache = None


def routes_for(country: str, channel: str = Channel.SMS) -> list[RouteChoice]:
    """The routes a send to `country` by `channel` tries, in order: the enabled routes of that channel (their
    backend's) that serve it, then, for SMS only, the default route (API.md section 15: SMS always has one)."""
    chosen = [
        RouteChoice(
            key=str(route.public_id),
            name=route.name,
            backend=route.backend,
            route=route,
            rate_per_second=route.rate_per_second,
        )
        for route in _enabled_routes()
        if backend_channel(route.backend) == channel and route.serves(country)
    ]
    return [*chosen, default_route()] if channel == Channel.SMS else chosen


@lru_cache(maxsize=64)
def backend_channel(backend: str) -> str:
    """The channel a backend sends by (its class's `channel`); "" for a name this version does not know,
    which no send then takes."""
    try:
        return str(backend_class(backend).channel)
    except ImportError:
        return ""


def channels_available(workspace: Workspace, country: str) -> list[str]:
    """The channels of the workspace's fallback order that can reach `country` now, in that order: SMS
    always (the default route), the others when an enabled route of theirs serves the country. The one
    home of "a channel with no enabled route for the number's country is skipped" (API.md section 15)."""
    return [channel for channel in workspace.channels if channel_reaches(channel, country)]


def channel_reaches(channel: str, country: str) -> bool:
    """Whether a send by `channel` to `country` has a route: SMS always; read from the cached route list."""
    if channel == Channel.SMS:
        return True
    return any(backend_channel(route.backend) == channel and route.serves(country) for route in _enabled_routes())


def route_choice(key: str) -> RouteChoice:
    """The route a receipt URL names (RouteNotFound for anything else)."""
    if key == DEFAULT_ROUTE_KEY:
        return default_route()
    route = Route.objects.filter(public_id=key).first() if _is_uuid(key) else None
    if route is None:
        raise RouteNotFound()
    return RouteChoice(
        key=str(route.public_id),
        name=route.name,
        backend=route.backend,
        route=route,
        rate_per_second=route.rate_per_second,
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# --- Settings, encrypted at rest ------------------------------------------------------------------


def route_settings_fernet() -> MultiFernet:
    return fernet_for(_ROUTE_SETTINGS_PURPOSE, settings.ROUTE_ENCRYPTION_KEY, settings.ROUTE_ENCRYPTION_KEY_FALLBACKS)


def route_settings(route: Route) -> dict[str, Any]:
    try:
        raw = route_settings_fernet().decrypt(bytes(route.encrypted_settings))
    except InvalidToken:
        # The key changed since the route was saved: its sends fail (and fail over) until it is saved again.
        logger.error("route %s: its settings cannot be decrypted with the current key", route.name)
        return {}
    return dict(json.loads(raw))


def _encrypt(values: Mapping[str, Any]) -> bytes:
    return route_settings_fernet().encrypt(json.dumps(dict(values)).encode())


def route_settings_problem(backend: str, values: Mapping[str, Any]) -> str | None:
    if backend not in BACKENDS:
        available = ", ".join(sorted(BACKENDS))
        return f"backend {backend!r} is not available in this version (available: {available})"
    gateway_class = backend_class(backend)
    required, optional = set(gateway_class.required_settings), set(gateway_class.optional_settings)
    missing = sorted(required - set(values))
    unknown = sorted(set(values) - required - optional)
    if missing:
        return f"the {backend} backend needs the setting(s) {', '.join(missing)}"
    if unknown:
        return f"the {backend} backend takes no setting(s) {', '.join(unknown)}"
    if backend == "smpp" and (len(str(values["system_id"])) > 15 or len(str(values["password"])) > 8):
        return "SMPP 3.4 allows a system_id of at most 15 characters and a password of at most 8"
    return gateway_class.settings_problem(values)


def route_receipt_url_problem(backend: str, route_key: str) -> str | None:
    """Why the provider would refuse the receipt URL a route of `backend` sends with each SMS, or None
    (no PUBLIC_URL: no receipt URL is sent). Vonage takes at most 100 characters."""
    if backend not in BACKENDS or not settings.PUBLIC_URL:
        return None
    url = receipt_url(route_key)
    problem = backend_class(backend).receipt_url_problem(url)
    if problem is None:
        return None
    return (
        f"{problem}: PUBLIC_URL ({len(settings.PUBLIC_URL)} characters) + {RECEIPT_PATH}<routeId> "
        f"({len(url) - len(settings.PUBLIC_URL)} characters)"
    )


def route_receipt_url_problems() -> list[str]:
    """The enabled routes whose receipt URL their provider would refuse, for `check --deploy --database
    default`; none when the database cannot be read."""
    try:
        routes = list(Route.objects.filter(enabled=True).order_by("priority", "name"))
    except DatabaseError:
        return []
    problems = []
    for route in routes:
        problem = route_receipt_url_problem(route.backend, str(route.public_id))
        if problem:
            problems.append(f"route {route.name}: {problem}")
    return problems


def route_create(
    *,
    name: str,
    backend: str,
    values: Mapping[str, Any],
    countries: str = "",
    priority: int = 100,
    rate_per_second: int | None = None,
    enabled: bool = True,
    actor: str = SYSTEM_ACTOR,
) -> Route:
    """Adds a route; its settings (credentials included) are stored encrypted and never shown again."""
    name = name.strip()
    if not name:
        raise ValidationFailed("the route name must not be empty")
    problem = route_settings_problem(backend, values)
    if problem:
        raise ValidationFailed(problem)
    public_id = uuid.uuid4()  # chosen here: the receipt URL it makes must suit the provider
    problem = route_receipt_url_problem(backend, str(public_id))
    if problem:
        raise ValidationFailed(problem)
    try:
        with transaction.atomic():
            route = Route.objects.create(
                public_id=public_id,
                name=name,
                backend=backend,
                encrypted_settings=_encrypt(values),
                countries=parse_countries(countries),
                priority=priority,
                rate_per_second=rate_per_second,
                enabled=enabled,
            )
            # The setting names only: values may be credentials.
            routes_changed()
            transaction.on_commit(routes_changed)  # again once visible to the next transaction
            audit_record(
                actor=actor,
                action=AuditEvent.Action.ROUTE_ADDED,
                workspace=None,
                target=route.name,
                detail={
                    "backend": backend,
                    "settings": sorted(values),
                    "countries": route.countries,
                    "priority": priority,
                    "rate_per_second": rate_per_second,
                },
            )
    except IntegrityError:
        raise RouteExists(f"a route named {name!r} already exists") from None
    return route


@transaction.atomic
def route_settings_replace(*, route: Route, values: Mapping[str, Any], actor: str = SYSTEM_ACTOR) -> Route:
    """New settings for a route (the admin's write-only form): validated, encrypted, audited by name only."""
    problem = route_settings_problem(route.backend, values)
    if problem:
        raise ValidationFailed(problem)
    Route.objects.filter(pk=route.pk).update(encrypted_settings=_encrypt(values))
    routes_changed()
    transaction.on_commit(routes_changed)
    audit_record(
        actor=actor,
        action=AuditEvent.Action.ROUTE_CHANGED,
        workspace=None,
        target=route.name,
        detail={"settings": sorted(values)},
    )
    route.refresh_from_db()
    return route


# --- Rate caps, shared by every worker --------------------------------------------------------------

_RATE_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 2) end
return count
"""


@lru_cache(maxsize=4)
def _rate_script(url: str) -> Any:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False)
    return client.register_script(_RATE_SCRIPT)


_local_lock = threading.Lock()
_local_counts: dict[tuple[str, int], int] = {}


def route_rate_wait(choice: RouteChoice) -> float:
    """0 when the route may send one more SMS this second, else the seconds until the next second.

    A fixed one-second window per route, counted in Redis so that every worker process shares it.
    """
    if not choice.rate_per_second:
        return 0.0
    now = time.time()
    second = int(now)
    if settings.REDIS_URL:
        try:
            count = int(_rate_script(settings.REDIS_URL)(keys=[f"zeckta:route:{{{choice.key}}}:{second}"]))
        except redis.RedisError as exc:
            # Sending beats waiting on a cap nobody can count: the provider throttles us at worst.
            logger.warning("route %s: rate cap unavailable, sending without it: %s", choice.name, exc)
            return 0.0
    else:
        with _local_lock:
            count = _local_counts.get((choice.key, second), 0) + 1
            _local_counts[(choice.key, second)] = count
    return 0.0 if count <= choice.rate_per_second else (second + 1) - now
