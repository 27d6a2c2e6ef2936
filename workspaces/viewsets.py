from typing import cast

from rest_framework.request import Request

from workspaces.models import ApiKey, Workspace
from zeckta.api.viewsets import ApiViewSet


class WorkspaceViewSet(ApiViewSet):
    """A /v1/ ViewSet whose caller is a workspace, authenticated by one of its API keys."""

    request: Request

    @property
    def api_key(self) -> ApiKey:
        return cast(ApiKey, self.request.auth)  # HasWorkspace has checked it is an ApiKey

    @property
    def workspace(self) -> Workspace:
        return self.api_key.workspace

    @property
    def is_test(self) -> bool:
        """Whether the caller holds a test key (API.md section 10): it sees test sessions only, and sends nothing."""
        return self.api_key.is_test

    @property
    def actor(self) -> str:
        """The audit trail's name for the caller: its key's display prefix, never the key."""
        return f"api:{self.api_key.prefix}"
