import logging

from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from workspaces.models import ApiKey, Workspace
from workspaces.ratelimit import RateLimiterUnavailable, check_rate
from zeckta.api.errors import RateLimited, ServiceUnavailable, UnsupportedMediaType

logger = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ApiViewSet(viewsets.ViewSet):
    """Base for /v1/ ViewSets: the per-key rate limit with its headers, and JSON bodies only.

    `rate_limit_fail_closed` names the actions that must not run when the limiter cannot be asked
    (they spend money); the others carry on without rate headers and log a warning.
    """

    rate_limit_fail_closed: frozenset[str] = frozenset()
    # No OPTIONS: DRF would answer it with metadata outside the envelope. It is a 405 like any method a
    # route does not serve (and `Allow` does not list it); the OpenAPI document describes the API instead.
    http_method_names = ["get", "post", "put", "delete", "head"]

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication and permissions first
        self._check_rate(request)
        # Only for a method this route serves: any other gets its 405 from dispatch, not a 415.
        handled = hasattr(self, request.method.lower())
        media_type = request.content_type.split(";")[0].strip()
        if handled and request.method in BODY_METHODS and media_type != "application/json":
            raise UnsupportedMediaType()

    def _check_rate(self, request: Request) -> None:
        api_key: ApiKey = request.auth
        try:
            decision = check_rate(key_id=api_key.pk, limit=api_key.tps)
        except RateLimiterUnavailable as exc:
            if self.action in self.rate_limit_fail_closed:
                logger.error("rate limiter unavailable, refusing %s: %s", self.action, exc)
                raise ServiceUnavailable() from None
            logger.warning("rate limiter unavailable, serving %s without it: %s", self.action, exc)
            return
        request.rate_decision = decision
        if not decision.allowed:
            raise RateLimited(headers={"Retry-After": str(max(decision.retry_after, 1))})

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        decision = getattr(request, "rate_decision", None)
        if decision is not None:
            for header, value in decision.headers().items():
                response[header] = value
        return response

    @property
    def workspace(self) -> Workspace:
        return self.request.auth.workspace
