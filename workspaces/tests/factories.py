import factory

from workspaces.models import ApiKey, Workspace
from workspaces.services import api_key_issue


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"workspace-{n}")


def issue_key(workspace: Workspace, **kwargs) -> tuple[ApiKey, str]:
    """A real key through the real service: (ApiKey row, raw key)."""
    issued = api_key_issue(workspace=workspace, **kwargs)
    return issued.api_key, issued.raw_key
