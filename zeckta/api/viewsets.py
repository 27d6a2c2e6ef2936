from rest_framework import viewsets
from rest_framework.request import Request

from zeckta.api.errors import UnsupportedMediaType
from zeckta.api.responses import envelope  # noqa: F401  (re-exported for the apps' ViewSets)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ApiViewSet(viewsets.ViewSet):
    """Base for /v1/ ViewSets: JSON bodies only, a missing Content-Type included."""

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if request.method in BODY_METHODS and request.content_type.split(";")[0].strip() != "application/json":
            raise UnsupportedMediaType()

    @property
    def workspace(self):
        return self.request.auth.workspace
