"""Reads of the fraud guard. The request path reads only the safe list, from a per-process cache."""

from fraud.models import SafeListEntry
from zeckta.localcache import LocalCache

# Per workspace: its safe-list prefixes. Empty for nearly every workspace, so a request pays no query for
# the feature (one per LOCAL_CACHE_SECONDS per process); a change made anywhere reaches every process
# within that time, and this one at once (fraud.apps: forget_on_save; the services: local_caches_changed).
_safe_lists: LocalCache[tuple[str, ...]] = LocalCache("fraud safe lists")


def safe_list_prefixes(*, workspace_id: int) -> tuple[str, ...]:
    return _safe_lists.get(
        workspace_id,
        lambda: tuple(SafeListEntry.objects.filter(workspace_id=workspace_id).values_list("prefix", flat=True)),
    )


def safe_listed(prefixes: tuple[str, ...], dest: str) -> bool:
    """Whether `dest` is on the safe list: the whole number, or one of its prefixes (`+23320`)."""
    return dest.startswith(prefixes) if prefixes else False
