import logging

from django.conf import settings
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from workspaces.errors import LiveKeyRequired
from workspaces.models import ApiKey
from workspaces.ratelimit import RateLimiterUnavailable, get_rate_limiter
from workspaces.selectors import api_key_authenticate
from zeckta import metrics
from zeckta.api.context import log_context_update
from zeckta.api.errors import AuthenticationRateLimited, AuthenticationRequired, WorkspaceSuspended
from zeckta.errors import NotFound

logger = logging.getLogger(__name__)


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer zk_live_...` (or `zk_test_...`). Every failure is the same 401; keys are never
    read from the URL.

    Failures are counted per client address: past AUTH_FAILURE_LIMIT_PER_MINUTE in a minute, a request
    from that address without a valid key gets 429 instead of a free lookup. A valid key is never counted
    nor held back.
    """

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            _count_failure(request)
            return None  # HasWorkspace then answers the same 401
        api_key = None
        if len(header) == 2 and header[0].lower() == self.keyword:
            try:
                raw_key = header[1].decode("ascii")
            except UnicodeDecodeError:
                raw_key = ""
            api_key = api_key_authenticate(raw_key=raw_key, now=timezone.now()) if raw_key else None
        if api_key is None:
            _count_failure(request)
            raise AuthenticationRequired()
        log_context_update(workspace=api_key.workspace.slug, key_prefix=api_key.prefix)
        if not api_key.workspace.is_active:
            raise WorkspaceSuspended()
        return (None, api_key)

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


def _count_failure(request: Request) -> None:
    """Raises AuthenticationRateLimited once the caller's address is past its failures for the minute."""
    address = request.META.get("REMOTE_ADDR") or "unknown"
    try:
        decision = get_rate_limiter().count_auth_failure(address=address, limit=settings.AUTH_FAILURE_LIMIT_PER_MINUTE)
    except RateLimiterUnavailable as exc:
        # The 401 still holds every unauthenticated request back; only the lookup cost is unguarded.
        logger.warning("rate limiter unavailable, not counting a failed authentication: %s", exc)
        return
    if decision.blocked:
        metrics.RATE_LIMITED.labels(reason=metrics.RateLimitReason.AUTH_FAILURES).inc()
        raise AuthenticationRateLimited(wait=decision.retry_after)


class HasWorkspace(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.auth, ApiKey)


class HoldsTestKey(BasePermission):
    """For routes of test keys only (the test inbox): any other caller gets the 404 of an unknown route, before
    its rate limit is counted. After HasWorkspace, so that no key at all is still the 401."""

    def has_permission(self, request: Request, view: object) -> bool:
        if not (isinstance(request.auth, ApiKey) and request.auth.is_test):
            raise NotFound()
        return True


class LiveKeyForChanges(BasePermission):
    """For live configuration (sender names): any key reads, only a live key changes. A test key's change is
    403 LIVE_KEY_REQUIRED before its body is read or its target looked up, so that nothing is written and
    whether the target exists is not told. After HasWorkspace, so that no key at all is still the 401."""

    def has_permission(self, request: Request, view: object) -> bool:
        if request.method not in SAFE_METHODS and isinstance(request.auth, ApiKey) and request.auth.is_test:
            raise LiveKeyRequired()
        return True
