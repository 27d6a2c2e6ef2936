from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from zeckta.api.errors import UnsupportedMediaType

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ApiViewSet(viewsets.ViewSet):
    """Base for /v1/ ViewSets: JSON bodies only, and the throttle's rate-limit headers on every answer.

    Authentication, permission and throttle classes come from REST_FRAMEWORK settings, so this kit names
    no app. `rate_limit_fail_closed` names the actions the throttle must refuse (503) when the limiter
    cannot be asked, because they spend money.
    """

    rate_limit_fail_closed: frozenset[str] = frozenset()
    # No OPTIONS: DRF would answer it with metadata outside the envelope. It is a 405 like any method a
    # route does not serve (and `Allow` does not list it); the OpenAPI document describes the API instead.
    http_method_names = ["get", "post", "put", "delete", "head"]

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)  # authentication, permissions, then the rate limit
        # Only for a method this route serves: any other gets its 405 from dispatch, not a 415.
        handled = request.method is not None and hasattr(self, request.method.lower())
        media_type = request.content_type.split(";")[0].strip()
        if handled and request.method in BODY_METHODS and media_type != "application/json":
            raise UnsupportedMediaType()

    def finalize_response(self, request: Request, response: Response, *args, **kwargs) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        for header, value in getattr(request, "rate_limit_headers", {}).items():
            response[header] = value
        return response
