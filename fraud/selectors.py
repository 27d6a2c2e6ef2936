"""Reads of the fraud guard: the safe list for the request path (from a per-process cache), and the blocks
for the API, always scoped by workspace."""

import uuid
from datetime import datetime, timedelta

from django.db.models import QuerySet

from fraud.errors import FraudBlockNotFound
from fraud.models import FraudBlock, SafeListEntry
from workspaces.models import Workspace
from zeckta.db import Page, page_of
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


# GET /v1/messaging/fraud/blocks covers the last 30 days (API.md section 13): longer than any block lasts
# (FRAUD_SECONDS_MAX), so every block that can still refuse a request is in it.
FRAUD_BLOCKS_LISTED_DAYS = 30


def fraud_blocks_list(*, workspace: Workspace, now: datetime) -> QuerySet[FraudBlock]:
    """The workspace's blocks and shadow decisions made in the last 30 days, newest first.

    The id breaks ties between blocks of the same instant, so the order is total and pages never overlap;
    the (workspace, -created_at) index serves it."""
    since = now - timedelta(days=FRAUD_BLOCKS_LISTED_DAYS)
    return FraudBlock.objects.filter(workspace=workspace, created_at__gte=since).order_by("-created_at", "-id")


def fraud_block_page(*, workspace: Workspace, now: datetime, page: int, page_size: int) -> Page[FraudBlock]:
    """One page (1-based) of `fraud_blocks_list` and its total."""
    return page_of(fraud_blocks_list(workspace=workspace, now=now), page=page, page_size=page_size)


def fraud_block_get(*, workspace: Workspace, block_id: uuid.UUID) -> FraudBlock:
    """The workspace's block with this id, whatever its age; another workspace's is not found, like a missing one."""
    block = FraudBlock.objects.filter(workspace=workspace, public_id=block_id).first()
    if block is None:
        raise FraudBlockNotFound()
    return block
