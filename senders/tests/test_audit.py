"""The audit trail of sender names: operators' commands and admin actions, and the API's changes."""

import pytest
from django.core.management import CommandError
from django.urls import reverse

from senders.models import SenderName
from senders.services import sender_name_approve
from senders.tests.factories import SenderNameFactory
from workspaces.models import AuditEvent
from workspaces.tests.factories import WorkspaceFactory
from workspaces.tests.helpers import all_audit_text, events, the_event
from zeckta.testing import run_command as run
from zeckta.testing import run_together

Action = AuditEvent.Action
SENDERS_URL = "/v1/messaging/sender-names"


# --- Sender names: operators --------------------------------------------------------------------


def test_add_sender_command_records_the_submission(workspace):
    public_id = run("add_sender", "acme", "ACMEPAY")[-1]
    event = the_event(Action.SENDER_SUBMITTED)
    assert (event.actor, event.workspace, event.target) == ("command:add_sender", workspace, public_id)
    assert event.detail == {"sender": "ACMEPAY", "sender_type": "alphanumeric", "status": "PENDING"}
    assert events(Action.SENDER_APPROVED) == []


def test_adding_an_approved_sender_records_the_approval_too(workspace):
    public_id = run("add_sender", "acme", "ACMEPAY", "--approve")[-1]
    assert [(event.action, event.target) for event in events()] == [
        (Action.SENDER_SUBMITTED, public_id),
        (Action.SENDER_APPROVED, public_id),
    ]
    assert {event.actor for event in events()} == {"command:add_sender"}


def test_a_sender_that_could_not_be_added_records_nothing(sender):
    with pytest.raises(CommandError):
        run("add_sender", "acme", "ZECKTA")  # a duplicate
    with pytest.raises(CommandError):
        run("add_sender", "acme", "A!")  # invalid
    assert events() == []


def test_approve_sender_command_records_one_approval(workspace):
    pending = SenderNameFactory(workspace=workspace, name="ACMEPAY", status="PENDING", approved_at=None)
    assert run("approve_sender", str(pending.public_id))[-1] == "APPROVED"
    assert run("approve_sender", str(pending.public_id))[-1] == "APPROVED"  # already approved: a no-op
    event = the_event(Action.SENDER_APPROVED)
    assert (event.actor, event.workspace, event.target) == ("command:approve_sender", workspace, str(pending.public_id))
    assert event.detail["previous_status"] == "PENDING"


def test_reject_sender_command_records_the_reason(workspace):
    pending = SenderNameFactory(workspace=workspace, name="ACMEPAY", status="PENDING", approved_at=None)
    assert run("reject_sender", str(pending.public_id), "--reason", "Looks like a bank")[-1] == "REJECTED"
    event = the_event(Action.SENDER_REJECTED)
    assert (event.actor, event.target) == ("command:reject_sender", str(pending.public_id))
    assert (event.detail["reason"], event.detail["previous_status"]) == ("Looks like a bank", "PENDING")


def test_approving_an_unknown_sender_records_nothing(db):
    with pytest.raises(CommandError):
        run("approve_sender", "6d9f0a55-5f55-4a4e-9d1e-8e7d5f0c1a11")
    with pytest.raises(CommandError):
        run("reject_sender", "not-a-uuid", "--reason", "x")
    assert events() == []


def test_admin_sender_actions_record_the_staff_user(admin_client, admin_user, workspace):
    first = SenderNameFactory(workspace=workspace, name="FIRST", status="PENDING", approved_at=None)
    second = SenderNameFactory(workspace=workspace, name="SECOND", status="PENDING", approved_at=None)
    url = reverse("admin:senders_sendername_changelist")
    assert admin_client.post(url, {"action": "approve_selected", "_selected_action": [first.pk]}).status_code == 302
    assert (
        admin_client.post(
            url, {"action": "reject_selected", "_selected_action": [second.pk], "apply": "yes", "reason": "Too generic"}
        ).status_code
        == 302
    )
    add = admin_client.post(
        reverse("admin:senders_sendername_add"),
        {"workspace": workspace.pk, "name": "THIRD", "sender_type": "alphanumeric"},
    )
    assert add.status_code == 302

    username = admin_user.get_username()
    third = SenderName.objects.get(name="THIRD")
    assert [(event.action, event.target, event.actor) for event in events()] == [
        (Action.SENDER_APPROVED, str(first.public_id), username),
        (Action.SENDER_REJECTED, str(second.public_id), username),
        (Action.SENDER_SUBMITTED, str(third.public_id), username),
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_approvals_record_exactly_one_event():
    workspace = WorkspaceFactory(slug="race")
    pending = SenderNameFactory(workspace=workspace, name="RACE", status="PENDING", approved_at=None)
    run_together(
        8, lambda i: sender_name_approve(sender_name=SenderName.objects.get(pk=pending.pk), actor=f"staff-{i}")
    )
    event = the_event(Action.SENDER_APPROVED)
    assert SenderName.objects.get(pk=pending.pk).approved_at == event.created_at


# --- Sender names: the public API ---------------------------------------------------------------


@pytest.fixture
def api_only(api):
    """The `api` client, with the fixture key's own api_key.issued event cleared: these tests watch the API."""
    AuditEvent.objects.all().delete()
    return api


def test_api_sender_changes_record_the_calling_key(api_only, issued_key, workspace):
    api = api_only
    actor = f"api:{issued_key[0].prefix}"
    created = api.post(
        SENDERS_URL, {"sender": "MYSHOP", "senderType": "alphanumeric", "purpose": "Logins"}, format="json"
    )
    assert created.status_code == 201
    sender_name_id = created.json()["data"]["senderNameId"]
    updated = api.put(
        f"{SENDERS_URL}/{sender_name_id}",
        {"sender": "MYSHOP2", "senderType": "alphanumeric", "purpose": "Receipts"},
        format="json",
    )
    assert updated.status_code == 200
    assert api.delete(f"{SENDERS_URL}/{sender_name_id}").status_code == 200

    assert [(event.action, event.target, event.actor, event.workspace) for event in events()] == [
        (Action.SENDER_SUBMITTED, sender_name_id, actor, workspace),
        (Action.SENDER_UPDATED, sender_name_id, actor, workspace),
        (Action.SENDER_DELETED, sender_name_id, actor, workspace),
    ]
    assert the_event(Action.SENDER_UPDATED).detail["sender"] == "MYSHOP2"
    assert the_event(Action.SENDER_DELETED).detail["sender"] == "MYSHOP2"


def test_refused_api_sender_changes_record_nothing(api_only, sender, raw_key):
    api = api_only
    other = SenderNameFactory(
        workspace=WorkspaceFactory(slug="other"), name="OTHERCO", status="PENDING", approved_at=None
    )
    body = {"sender": "ZECKTA", "senderType": "alphanumeric", "purpose": "Logins"}
    assert api.post(SENDERS_URL, body, format="json").status_code == 409  # a duplicate
    assert api.post(SENDERS_URL, {**body, "sender": "A!"}, format="json").status_code == 400
    assert (
        api.put(f"{SENDERS_URL}/{sender.public_id}", {**body, "sender": "NEW"}, format="json").status_code == 409
    )  # APPROVED: not editable
    assert api.put(f"{SENDERS_URL}/{other.public_id}", body, format="json").status_code == 404  # not ours
    assert api.delete(f"{SENDERS_URL}/{other.public_id}").status_code == 404
    assert events() == []
    assert raw_key not in all_audit_text()


def test_an_admin_change_of_a_sender_purpose_is_audited_with_old_and_new_values(admin_client, admin_user, sender):
    url = reverse("admin:senders_sendername_change", args=[sender.pk])
    AuditEvent.objects.all().delete()
    assert admin_client.post(url, {"purpose": "Bank login codes", "country_code": "GH"}).status_code == 302

    event = the_event(Action.SENDER_UPDATED)
    assert (event.actor, event.target) == (admin_user.get_username(), str(sender.public_id))
    assert event.detail["changes"] == {
        "purpose": {"old": "", "new": "Bank login codes"},
        "country_code": {"old": "", "new": "GH"},
    }
