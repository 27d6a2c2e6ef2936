"""Reads for tenancy: find a workspace, authenticate a raw API key."""

import hmac
from datetime import datetime, timedelta

from workspaces import keys
from workspaces.errors import WorkspaceNotFound
from workspaces.models import ApiKey, Workspace

# last_used_at is written at most this often per key, so it costs no query on most requests (seconds).
LAST_USED_RESOLUTION = timedelta(seconds=60)


def workspace_get_by_slug(slug: str) -> Workspace:
    workspace = Workspace.objects.filter(slug=slug).first()
    if workspace is None:
        raise WorkspaceNotFound(f"no workspace with slug {slug!r}")
    return workspace


def api_key_authenticate(*, raw_key: str, now: datetime) -> ApiKey | None:
    """The live key for a raw key, with its workspace; None for unknown, revoked or expired keys."""
    if not keys.could_be_key(raw_key):
        return None
    api_key = ApiKey.objects.select_related("workspace").filter(prefix=keys.key_prefix(raw_key)).first()
    if api_key is None or not hmac.compare_digest(api_key.digest, keys.key_digest(raw_key)):
        return None
    if api_key.revoked_at is not None or (api_key.expires_at is not None and api_key.expires_at <= now):
        return None
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
