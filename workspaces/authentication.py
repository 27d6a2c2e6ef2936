from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from workspaces.models import ApiKey
from workspaces.selectors import api_key_authenticate
from zeckta.api.errors import WorkspaceSuspended


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer zk_live_...`. Every failure is the same 401; keys are never read from the URL."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None  # HasWorkspace then answers the same 401
        if len(header) != 2 or header[0].lower() != self.keyword:
            raise AuthenticationFailed()
        try:
            raw_key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed() from None
        api_key = api_key_authenticate(raw_key=raw_key, now=timezone.now())
        if api_key is None:
            raise AuthenticationFailed()
        if not api_key.workspace.is_active:
            raise WorkspaceSuspended()
        return (None, api_key)

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class HasWorkspace(BasePermission):
    def has_permission(self, request: Request, view) -> bool:
        return isinstance(request.auth, ApiKey)
