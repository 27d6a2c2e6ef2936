"""The per-key request rate as a DRF throttle: `ApiKey.tps` requests per second, counted by the
backend `settings.RATE_LIMIT_BACKEND` names (`workspaces.ratelimit`)."""

import logging
from typing import TYPE_CHECKING

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from workspaces.models import ApiKey
from workspaces.ratelimit import RateDecision, RateLimiterUnavailable, get_rate_limiter
from zeckta import metrics
from zeckta.errors import ServiceUnavailable

if TYPE_CHECKING:  # rest_framework.views loads this module while it defines APIView
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class ApiKeyRateThrottle(BaseThrottle):
    """Counts every authenticated call; the decision's headers go on the answer (ApiViewSet adds them).

    When the limiter cannot be asked, the actions a view names in `rate_limit_fail_closed` (they spend
    money) answer 503; the others are served without the limit, and a warning is logged.
    """

    decision: RateDecision | None = None

    def allow_request(self, request: Request, view: "APIView") -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True  # not authenticated: the permission check has answered 401 already
        action = getattr(view, "action", None)
        try:
            self.decision = get_rate_limiter().check(key_id=api_key.pk, limit=api_key.tps)
        except RateLimiterUnavailable as exc:
            if action in getattr(view, "rate_limit_fail_closed", ()):
                logger.error("rate limiter unavailable, refusing %s: %s", action, exc)
                raise ServiceUnavailable() from None
            logger.warning("rate limiter unavailable, serving %s without it: %s", action, exc)
            return True
        request.rate_limit_headers = self.decision.headers()  # type: ignore[attr-defined]
        if not self.decision.allowed:
            metrics.RATE_LIMITED.labels(reason=metrics.RateLimitReason.KEY_RATE).inc()
        return self.decision.allowed

    def wait(self) -> float | None:
        return None if self.decision is None else self.decision.retry_after
