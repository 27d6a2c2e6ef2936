"""Reads for tenancy: find a workspace, authenticate a raw API key."""

import copy
import hmac
from datetime import datetime, timedelta

from workspaces import keys
from workspaces.errors import WorkspaceNotFound
from workspaces.models import ApiKey, Workspace
from zeckta.localcache import LocalCache

# last_used_at is written at most this often per key, so it costs no query on most requests (seconds).
LAST_USED_RESOLUTION = timedelta(seconds=60)


def workspace_get_by_slug(slug: str) -> Workspace:
    workspace = Workspace.objects.filter(slug=slug).first()
    if workspace is None:
        raise WorkspaceNotFound(f"no workspace with slug {slug!r}")
    return workspace


# Keyed by the raw key's digest: the raw key itself is kept nowhere, not even in memory between calls.
_api_keys: LocalCache[ApiKey | None] = LocalCache("api keys")


def api_key_authenticate(*, raw_key: str, now: datetime) -> ApiKey | None:
    """The live key for a raw key, with its workspace; None for unknown, revoked or expired keys.

    Read from the database at most once per LOCAL_CACHE_SECONDS per process (zeckta.localcache): a
    revoked key or a suspended workspace is refused everywhere within that time. Each call gets its own
    copies, so nothing a request sets on them reaches another request.
    """
    if not keys.could_be_key(raw_key):
        return None
    digest = keys.key_digest(raw_key)
    cached = _api_keys.get(digest, lambda: _api_key_load(prefix=keys.key_prefix(raw_key)))
    if cached is None or not hmac.compare_digest(cached.digest, digest):
        return None
    if cached.revoked_at is not None or (cached.expires_at is not None and cached.expires_at <= now):
        return None
    if cached.last_used_at is None or now - cached.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=cached.pk).update(last_used_at=now)
        cached.last_used_at = now
    api_key = copy.copy(cached)
    api_key.workspace = copy.copy(cached.workspace)
    return api_key


def _api_key_load(*, prefix: str) -> ApiKey | None:
    return ApiKey.objects.select_related("workspace").filter(prefix=prefix).first()
