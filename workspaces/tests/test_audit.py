"""The audit trail: every operator and API change leaves exactly one row, in its own transaction, and no secret."""

import hashlib
import re

import pytest
from django.core.management import CommandError
from django.db import transaction
from django.urls import reverse

from workspaces.audit import audit_record
from workspaces.billing import balance_credit
from workspaces.models import ApiKey, AuditEvent, LedgerEntry, Workspace
from workspaces.services import api_key_issue
from workspaces.tests.factories import WorkspaceFactory, issue_key
from workspaces.tests.helpers import all_audit_text, events, the_event
from workspaces.tests.test_admin import workspace_form_data
from zeckta.testing import run_command as run

Action = AuditEvent.Action
SENDERS_URL = "/v1/messaging/sender-names"
AUDIT_CHANGELIST = reverse("admin:workspaces_auditevent_changelist")


# --- Workspaces ---------------------------------------------------------------------------------


def test_create_workspace_command_records_who_created_it(db):
    run("create_workspace", "Acme Bank", "--prepaid", "500")
    workspace = Workspace.objects.get(slug="acme-bank")
    event = the_event(Action.WORKSPACE_CREATED)
    assert (event.actor, event.workspace, event.workspace_slug, event.target) == (
        "command:create_workspace",
        workspace,
        "acme-bank",
        "acme-bank",
    )
    assert event.detail == {"name": "Acme Bank", "prepaid": True, "opening_units": 500}
    assert len(events()) == 1  # the opening balance is part of the creation, not a credit
    assert LedgerEntry.objects.get().actor == "command:create_workspace"


def test_a_workspace_that_could_not_be_created_leaves_no_event(db):
    WorkspaceFactory(slug="acme")
    with pytest.raises(CommandError, match="already exists"):
        run("create_workspace", "Acme", "--slug", "acme")
    with pytest.raises(CommandError):
        run("create_workspace", "Other", "--otp-validity", "5")
    assert events() == []


def test_adding_a_workspace_in_the_admin_records_the_staff_user(admin_client, admin_user, db):
    data = workspace_form_data(Workspace(name="New Co", slug="new-co"))
    assert admin_client.post(reverse("admin:workspaces_workspace_add"), data).status_code == 302
    event = the_event(Action.WORKSPACE_CREATED)
    assert (event.actor, event.workspace, event.target) == (
        admin_user.get_username(),
        Workspace.objects.get(slug="new-co"),
        "new-co",
    )


def test_the_trail_outlives_a_deleted_workspace(db):
    workspace = WorkspaceFactory(slug="gone")
    issue_key(workspace)
    workspace.delete()
    event = the_event(Action.API_KEY_ISSUED)
    assert (event.workspace, event.workspace_slug) == (None, "gone")


# --- API keys -----------------------------------------------------------------------------------


def test_issue_api_key_command_records_the_prefix_and_never_the_key(workspace):
    raw_key = run("issue_api_key", "acme", "--name", "backend", "--tps", "7")[-1]
    api_key = ApiKey.objects.get()
    event = the_event(Action.API_KEY_ISSUED)
    assert (event.actor, event.workspace, event.target) == ("command:issue_api_key", workspace, api_key.prefix)
    assert event.detail == {"name": "backend", "tps": 7, "expires_at": None}
    assert raw_key not in all_audit_text() and api_key.digest not in all_audit_text()


def test_issuing_a_test_key_records_its_mode(workspace):
    run("issue_api_key", "acme", "--test")
    assert the_event(Action.API_KEY_ISSUED).detail == {"name": "", "tps": 10, "expires_at": None, "mode": "test"}


def test_issuing_a_key_in_the_admin_records_the_staff_user_and_never_the_key(admin_client, admin_user, workspace):
    response = admin_client.post(
        reverse("admin:workspaces_apikey_add"), {"workspace": workspace.pk, "name": "admin-made", "tps": "3"}
    )
    raw_key = re.search(r'value="(zk_live_[A-Za-z0-9_\-]+)"', response.text).group(1)
    api_key = ApiKey.objects.get()
    event = the_event(Action.API_KEY_ISSUED)
    assert (event.actor, event.target) == (admin_user.get_username(), api_key.prefix)
    assert raw_key not in all_audit_text()
    assert hashlib.sha256(raw_key.encode()).hexdigest() not in all_audit_text()


def test_revoke_api_key_command_records_the_first_revocation_only(workspace):
    api_key, _ = issue_key(workspace, name="old")
    assert run("revoke_api_key", api_key.prefix)[-1] == f"revoked {api_key.prefix}"
    run("revoke_api_key", api_key.prefix)  # harmless, and nothing changed: no second event
    event = the_event(Action.API_KEY_REVOKED)
    assert (event.actor, event.workspace, event.target, event.detail) == (
        "command:revoke_api_key",
        workspace,
        api_key.prefix,
        {"name": "old"},
    )


def test_revoking_an_unknown_prefix_records_nothing(db):
    with pytest.raises(CommandError, match="no API key"):
        run("revoke_api_key", "zk_live_nothere")
    assert events() == []


def test_revoking_keys_in_the_admin_records_one_event_per_key(admin_client, admin_user, workspace):
    first, _ = issue_key(workspace)
    second, _ = issue_key(workspace)
    issue_key(workspace)
    response = admin_client.post(
        reverse("admin:workspaces_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 302
    revoked = events(Action.API_KEY_REVOKED)
    assert {event.target for event in revoked} == {first.prefix, second.prefix}
    assert {event.actor for event in revoked} == {admin_user.get_username()}


def test_a_rolled_back_transaction_takes_its_event_with_it(workspace):
    with pytest.raises(RuntimeError), transaction.atomic():
        api_key_issue(workspace=workspace, name="doomed")
        raise RuntimeError("the caller's transaction fails after the service returned")
    assert not ApiKey.objects.exists()
    assert events() == []


# --- Balance ------------------------------------------------------------------------------------


def test_credit_workspace_command_records_the_credit(db):
    workspace = WorkspaceFactory(slug="pre", is_prepaid=True)
    assert run("credit_workspace", "pre", "250")[-1] == "250"
    event = the_event(Action.BALANCE_CREDITED)
    entry = LedgerEntry.objects.get()
    assert (event.actor, event.workspace, event.target) == ("command:credit_workspace", workspace, "pre")
    assert event.detail == {"units": 250, "balance_after": 250, "reference": "", "ledger_entry": entry.pk}


def test_a_refused_credit_records_nothing(db):
    WorkspaceFactory(slug="post")
    with pytest.raises(CommandError, match="postpaid"):
        run("credit_workspace", "post", "10")
    with pytest.raises(CommandError):
        run("credit_workspace", "nowhere", "10")
    assert events() == []


def test_refunds_are_in_the_ledger_only(db):
    workspace = WorkspaceFactory(is_prepaid=True)
    balance_credit(workspace=workspace, units=1, reason=LedgerEntry.Reason.REFUND, reference="sms-1")
    assert LedgerEntry.objects.count() == 1
    assert events() == []


def test_crediting_in_the_admin_records_the_staff_user(admin_client, admin_user, db):
    prepaid = WorkspaceFactory(slug="pre", is_prepaid=True)
    WorkspaceFactory(slug="post")
    url = reverse("admin:workspaces_workspace_changelist")
    selected = {"action": "credit_balance", "_selected_action": list(Workspace.objects.values_list("pk", flat=True))}
    assert admin_client.post(url, {**selected, "apply": "yes", "units": "75", "reference": "INV-7"}).status_code == 302
    event = the_event(Action.BALANCE_CREDITED)  # the postpaid one was skipped
    assert (event.actor, event.workspace, event.detail["reference"]) == (admin_user.get_username(), prepaid, "INV-7")


# --- The recorder and the admin page ------------------------------------------------------------


@pytest.mark.parametrize("detail", [{"digest": "ab" * 32}, {"code": "123456"}, {"name": "zk_live_" + "x" * 43}])
def test_the_recorder_refuses_a_detail_that_holds_a_secret(workspace, detail):
    with pytest.raises(ValueError):
        audit_record(actor="ops", action=Action.API_KEY_ISSUED, workspace=workspace, target="t", detail=detail)
    assert events() == []


def test_the_admin_lists_filters_and_searches_the_trail_read_only(admin_client, admin_user, workspace):
    other = WorkspaceFactory(slug="globex")
    api_key, raw_key = issue_key(workspace, name="backend")
    run("revoke_api_key", api_key.prefix)
    issue_key(other)

    page = admin_client.get(AUDIT_CHANGELIST)
    assert page.status_code == 200
    assert api_key.prefix in page.text and "command:revoke_api_key" in page.text and "globex" in page.text
    assert raw_key not in page.text and api_key.digest not in page.text

    def listed(query: dict) -> list[tuple[str, str]]:
        response = admin_client.get(AUDIT_CHANGELIST, query)
        assert response.status_code == 200
        return [(event.action, event.workspace_slug) for event in response.context["cl"].result_list]

    assert listed({"action__exact": Action.API_KEY_REVOKED}) == [(Action.API_KEY_REVOKED, "acme")]
    assert listed({"workspace__id__exact": other.pk}) == [(Action.API_KEY_ISSUED, "globex")]
    assert listed({"q": "command:revoke"}) == [(Action.API_KEY_REVOKED, "acme")]
    assert len(listed({"q": api_key.prefix})) == 2  # issued and revoked
    assert len(listed({"q": "globex"})) == 1

    event = the_event(Action.API_KEY_REVOKED)
    change_url = reverse("admin:workspaces_auditevent_change", args=[event.pk])
    view = admin_client.get(change_url)
    assert view.status_code == 200 and 'name="actor"' not in view.text
    assert admin_client.get(reverse("admin:workspaces_auditevent_add")).status_code == 403
    assert admin_client.post(change_url, {"actor": "someone-else"}).status_code == 403
    assert admin_client.get(reverse("admin:workspaces_auditevent_delete", args=[event.pk])).status_code == 403
    assert 'value="delete_selected"' not in page.text
    admin_client.post(AUDIT_CHANGELIST, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert AuditEvent.objects.get(pk=event.pk).actor == "command:revoke_api_key"  # neither changed nor deleted


# --- Admin edits of policy, suspension, billing mode, key limits, sender purpose -------------------


def test_admin_changes_of_a_workspace_are_audited_with_old_and_new_values(admin_client, admin_user, workspace):
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    data = workspace_form_data(workspace, otp_validity_seconds="120", is_active=None, is_prepaid="on")
    assert admin_client.post(url, data).status_code == 302

    event = the_event(Action.WORKSPACE_CHANGED)
    assert (event.actor, event.workspace, event.target) == (admin_user.get_username(), workspace, workspace.slug)
    assert event.detail["changes"] == {
        "otp_validity_seconds": {"old": 300, "new": 120},
        "is_active": {"old": True, "new": False},
        "is_prepaid": {"old": False, "new": True},
    }


def test_admin_changes_of_a_key_are_audited_with_old_and_new_values(admin_client, admin_user, workspace):
    api_key, _ = issue_key(workspace, tps=10)
    url = reverse("admin:workspaces_apikey_change", args=[api_key.pk])
    response = admin_client.post(
        url, {"name": api_key.name, "tps": "3", "expires_at_0": "2030-01-01", "expires_at_1": "00:00:00"}
    )
    assert response.status_code == 302

    event = the_event(Action.API_KEY_CHANGED)
    assert (event.actor, event.target) == (admin_user.get_username(), api_key.prefix)
    assert event.detail["changes"]["tps"] == {"old": 10, "new": 3}
    assert event.detail["changes"]["expires_at"] == {"old": None, "new": "2030-01-01T00:00:00+00:00"}


def test_an_admin_save_that_changes_nothing_is_not_audited(admin_client, workspace):
    url = reverse("admin:workspaces_workspace_change", args=[workspace.pk])
    AuditEvent.objects.all().delete()
    assert admin_client.post(url, workspace_form_data(workspace)).status_code == 302
    assert events() == []
