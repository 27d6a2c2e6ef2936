"""`manage.py workspace_ids SLUG` and the admin's read-only ids (API.md sections 6 and 14): the Twilio Verify
door's account id and service id of a workspace, fixed at creation."""

import re

from django.urls import reverse

from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory
from workspaces.tests.test_admin import workspace_form_data
from zeckta.testing import assert_one_line_error, manage
from zeckta.testing import run_command as run


def test_workspace_ids_prints_the_account_and_service_ids_last(db):
    workspace = WorkspaceFactory(slug="acme")

    lines = run("workspace_ids", "acme")

    assert lines[-1] == f"{workspace.account_sid} {workspace.service_sid}"
    assert re.fullmatch(r"AC[0-9a-f]{32} VA[0-9a-f]{32}", lines[-1])


def test_workspace_ids_as_a_process_and_an_unknown_slug(transactional_db):
    workspace = WorkspaceFactory(slug="proc")
    printed = manage("workspace_ids", "proc")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines()[-1] == f"{workspace.account_sid} {workspace.service_sid}"

    assert_one_line_error(manage("workspace_ids", "nope"), "no workspace")


def test_the_admin_shows_the_ids_and_a_posted_change_is_ignored(admin_client, db):
    workspace = WorkspaceFactory(slug="acme")
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])

    page = admin_client.get(url)

    assert page.status_code == 200
    html = page.content.decode()
    assert workspace.account_sid in html and workspace.service_sid in html
    form = page.context["adminform"].form
    assert "account_sid" not in form.fields and "service_sid" not in form.fields  # read-only: not in the form
    before = (workspace.account_sid, workspace.service_sid)
    forged = {"account_sid": "AC" + "0" * 32, "service_sid": "VA" + "0" * 32}
    saved = admin_client.post(url, workspace_form_data(workspace, name="Renamed", **forged))
    assert saved.status_code == 302
    workspace.refresh_from_db()
    assert workspace.name == "Renamed"  # the form was saved...
    assert (workspace.account_sid, workspace.service_sid) == before  # ...and the ids stayed
    assert not Workspace.objects.filter(account_sid=forged["account_sid"]).exists()
