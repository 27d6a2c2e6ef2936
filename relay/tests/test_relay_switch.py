"""The relay's switch (API.md section 14): off for every workspace until staff turn it on, in the admin
(audited, as every workspace change) or with `create_workspace --relay`."""

import pytest
from django.urls import reverse

from workspaces.models import AuditEvent, Workspace
from workspaces.tests.test_admin import workspace_form_data
from zeckta.testing import run_command

pytestmark = pytest.mark.django_db


def test_create_workspace_leaves_the_relay_off_unless_told(db):
    run_command("create_workspace", "Plain")
    run_command("create_workspace", "Relaying", "--relay")

    assert Workspace.objects.get(slug="plain").relay_enabled is False
    assert Workspace.objects.get(slug="relaying").relay_enabled is True


def test_staff_turn_the_relay_on_in_the_admin_and_it_is_audited(admin_client, workspace):
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    assert 'name="relay_enabled"' in admin_client.get(url).text

    response = admin_client.post(url, {**workspace_form_data(workspace), "relay_enabled": "on"})

    assert response.status_code == 302, response.context["adminform"].form.errors
    workspace.refresh_from_db()
    assert workspace.relay_enabled is True
    event = AuditEvent.objects.filter(action=AuditEvent.Action.WORKSPACE_CHANGED).get()
    assert event.detail["changes"] == {"relay_enabled": {"old": False, "new": True}}
