import uuid
from dataclasses import dataclass

from django.db.models import QuerySet
from rest_framework import status

from senders.models import SenderName
from workspaces.models import Workspace
from zeckta.api.errors import ApplicationError


class SenderNameNotFound(ApplicationError):
    """Missing and another workspace's sender name answer alike: existence is not leaked."""

    status_code = status.HTTP_404_NOT_FOUND
    code = "NOT_FOUND"
    default_message = "Sender name not found."


@dataclass(frozen=True)
class SenderNamePage:
    items: list[SenderName]
    total: int


def sender_get_approved(*, workspace: Workspace, sender: str) -> SenderName | None:
    """The workspace's APPROVED sender with exactly this name (case-sensitive), if any."""
    return SenderName.objects.filter(workspace=workspace, sender=sender, status=SenderName.Status.APPROVED).first()


def sender_name_list(*, workspace: Workspace) -> QuerySet[SenderName]:
    # `sender` is unique per workspace, so this order is total and pages never overlap.
    return SenderName.objects.filter(workspace=workspace).order_by("sender", "pk")


def sender_name_page(*, workspace: Workspace, page: int, page_size: int) -> SenderNamePage:
    """One page (1-based) of the workspace's sender names and their total: two queries (one past the last page)."""
    names = sender_name_list(workspace=workspace)
    total = names.count()
    offset = (page - 1) * page_size
    # Checked in Python: an absurd page number never becomes an OFFSET that PostgreSQL refuses.
    items = list(names[offset : offset + page_size]) if offset < total else []
    return SenderNamePage(items=items, total=total)


def sender_name_get(*, workspace: Workspace, sender_name_id: uuid.UUID) -> SenderName:
    sender_name = SenderName.objects.filter(workspace=workspace, public_id=sender_name_id).first()
    if sender_name is None:
        raise SenderNameNotFound()
    return sender_name
