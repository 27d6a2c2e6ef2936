"""Reads for sender names, always scoped by workspace except for staff tools (`sender_name_get_by_id`)."""

import uuid

from django.db.models import QuerySet

from senders.errors import SenderNameNotFound
from senders.models import SenderName
from workspaces.models import Workspace
from zeckta.db import Page, page_of
from zeckta.localcache import LocalCache

_approved: LocalCache[SenderName | None] = LocalCache("approved sender names")


def live_sender_names(workspace: Workspace) -> QuerySet[SenderName]:
    """The workspace's sender names that are not deleted: the only ones the API shows or sends from."""
    return SenderName.objects.filter(workspace=workspace, deleted_at__isnull=True)


def sender_name_get_approved(*, workspace: Workspace, name: str) -> SenderName | None:
    """The workspace's APPROVED sender name with exactly this text (case-sensitive), if any.

    Read at most once per LOCAL_CACHE_SECONDS per process: a rejected or deleted name stops being
    usable everywhere within that time. The caller must not change the instance (it is shared).
    """
    return _approved.get(
        (workspace.pk, name),
        lambda: live_sender_names(workspace).filter(name=name, status=SenderName.Status.APPROVED).first(),
    )


def sender_name_list(*, workspace: Workspace) -> QuerySet[SenderName]:
    # `name` is unique per workspace, so this order is total and pages never overlap.
    return live_sender_names(workspace).order_by("name", "pk")


def sender_name_page(*, workspace: Workspace, page: int, page_size: int) -> Page[SenderName]:
    """One page (1-based) of the workspace's sender names and their total."""
    return page_of(sender_name_list(workspace=workspace), page=page, page_size=page_size)


def sender_name_get(*, workspace: Workspace, sender_name_id: uuid.UUID) -> SenderName:
    sender_name = live_sender_names(workspace).filter(public_id=sender_name_id).first()
    if sender_name is None:
        raise SenderNameNotFound()
    return sender_name


def sender_name_get_by_id(public_id: str) -> SenderName:
    """Any workspace's sender name, for staff tools (the commands); the id as an operator typed it."""
    try:
        sender_name_id = uuid.UUID(str(public_id))
    except ValueError:
        raise SenderNameNotFound(f"no sender name with id {public_id!r}") from None
    rows = SenderName.objects.select_related("workspace").filter(deleted_at__isnull=True)
    sender_name = rows.filter(public_id=sender_name_id).first()
    if sender_name is None:
        raise SenderNameNotFound(f"no sender name with id {public_id!r}")
    return sender_name


def sender_name_default(*, workspace: Workspace) -> SenderName | None:
    """The sender of texts whose caller names none (the Supabase hook, API.md section 14): the approved name
    staff marked as the workspace's default, else the first one approved; None when none is approved."""
    approved = live_sender_names(workspace).filter(status=SenderName.Status.APPROVED)
    return approved.order_by("-is_default", "approved_at", "pk").first()
