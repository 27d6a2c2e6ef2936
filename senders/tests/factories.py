import factory
from django.utils import timezone

from senders.models import SenderName
from workspaces.tests.factories import WorkspaceFactory


class SenderNameFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SenderName

    workspace = factory.SubFactory(WorkspaceFactory)
    name = "ZECKTA"
    sender_type = SenderName.Type.ALPHANUMERIC
    status = SenderName.Status.APPROVED
    approved_at = factory.LazyFunction(timezone.now)
