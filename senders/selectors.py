from senders.models import SenderName
from workspaces.models import Workspace


def sender_get_approved(*, workspace: Workspace, sender: str) -> SenderName | None:
    """The workspace's APPROVED sender with exactly this name (case-sensitive), if any."""
    return SenderName.objects.filter(workspace=workspace, sender=sender, status=SenderName.Status.APPROVED).first()
