"""HTTP Basic the way Twilio clients send it: the workspace's account id (`AC...`) as the username, one of its
API keys (live or test) as the password. The key lookup, the per-address count of failures and the
suspended-workspace refusal are the Bearer scheme's own (workspaces.authentication)."""

import base64
import binascii
import hmac

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from workspaces.authentication import _count_failure
from workspaces.models import ApiKey
from workspaces.selectors import api_key_authenticate
from zeckta.api.context import log_context_update
from zeckta.api.errors import AuthenticationRequired, WorkspaceSuspended


class AccountKeyBasicAuthentication(BaseAuthentication):
    """`Authorization: Basic base64(AC...:zk_live_...)`. Every failure, a key of another workspace included,
    is the same 401."""

    keyword = b"basic"

    def authenticate(self, request: Request) -> tuple[None, ApiKey]:
        credentials = _credentials(get_authorization_header(request))
        api_key = None
        if credentials is not None:
            account_sid, raw_key = credentials
            api_key = api_key_authenticate(raw_key=raw_key, now=timezone.now()) if raw_key else None
            # The key alone proves the caller; the username must still name the key's own workspace.
            if api_key is not None and not hmac.compare_digest(account_sid, api_key.workspace.account_sid):
                api_key = None
        if api_key is None:
            _count_failure(request)  # raises the 429 once this address is past its failures for the minute
            raise AuthenticationRequired()
        log_context_update(workspace=api_key.workspace.slug, key_prefix=api_key.prefix)
        if not api_key.workspace.is_active:
            raise WorkspaceSuspended()
        return (None, api_key)

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="Twilio API"'


def _credentials(header: bytes) -> tuple[str, str] | None:
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != AccountKeyBasicAuthentication.keyword:
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None
