"""Operator commands for sender names: add, approve, reject."""

import uuid

import pytest
from django.core.management import CommandError

from senders.models import SenderName
from senders.tests.factories import SenderNameFactory
from zeckta.testing import assert_one_line_error, manage
from zeckta.testing import run_command as run


def test_add_sender_prints_the_sender_name_id_and_leaves_it_pending(workspace):
    lines = run("add_sender", "acme", "ACME Bank")
    sender_name = SenderName.objects.get()
    assert lines[-1] == str(sender_name.public_id)
    assert (sender_name.workspace, sender_name.name, sender_name.sender_type) == (
        workspace,
        "ACME Bank",
        "alphanumeric",
    )
    assert (sender_name.status, sender_name.approved_at) == ("PENDING", None)


@pytest.mark.parametrize("sender, sender_type", [("+233202007745", "msisdn"), ("4040", "shortcode")])
def test_add_sender_with_a_type_and_approve_is_approved_at_once(workspace, sender, sender_type):
    lines = run("add_sender", "acme", sender, "--type", sender_type, "--approve")
    sender_name = SenderName.objects.get(public_id=uuid.UUID(lines[-1]))
    assert (sender_name.sender_type, sender_name.status) == (sender_type, "APPROVED")
    assert sender_name.approved_at is not None


@pytest.mark.parametrize(
    "args",
    [
        ("nope", "ACME"),  # unknown workspace
        ("acme", "ACME", "--type", "carrier-pigeon"),  # unknown type
        ("acme", "AB"),  # too short
        ("acme", "12345"),  # alphanumeric without a letter
        ("acme", "ABCDEFGHIJKL"),  # too long
        ("acme", "0202007745", "--type", "msisdn"),  # not E.164
        ("acme", "12", "--type", "shortcode"),
    ],
)
def test_add_sender_refuses_bad_input_and_creates_nothing(workspace, args):
    with pytest.raises(CommandError):
        run("add_sender", *args)
    assert not SenderName.objects.exists()


def test_add_sender_refuses_a_duplicate(sender):
    with pytest.raises(CommandError, match="already has"):
        run("add_sender", "acme", "ZECKTA")
    assert SenderName.objects.count() == 1


def test_approve_sender_prints_approved(workspace):
    pending = SenderNameFactory(workspace=workspace, status="PENDING", approved_at=None)
    assert run("approve_sender", str(pending.public_id))[-1] == "APPROVED"
    pending.refresh_from_db()
    assert pending.status == "APPROVED" and pending.approved_at is not None


def test_reject_sender_prints_rejected_and_keeps_the_reason(sender):
    assert run("reject_sender", str(sender.public_id), "--reason", "Brand not verified")[-1] == "REJECTED"
    sender.refresh_from_db()
    assert (sender.status, sender.status_reason, sender.approved_at) == ("REJECTED", "Brand not verified", None)


@pytest.mark.parametrize(
    "args",
    [
        ("reject_sender", "{id}"),  # --reason missing
        ("reject_sender", "{id}", "--reason", "   "),
        ("reject_sender", str(uuid.uuid4()), "--reason", "x"),
        ("approve_sender", str(uuid.uuid4())),
        ("approve_sender", "not-a-uuid"),
        ("reject_sender", "12", "--reason", "x"),
    ],
)
def test_sender_transitions_refuse_bad_input_and_change_nothing(sender, args):
    with pytest.raises(CommandError):
        run(*(arg.replace("{id}", str(sender.public_id)) for arg in args))
    sender.refresh_from_db()
    assert sender.status == "APPROVED"


def test_sender_commands_as_processes(transactional_db):
    assert manage("create_workspace", "Proc Co").returncode == 0
    added = manage("add_sender", "proc-co", "PROCCO")
    assert added.returncode == 0, added.stderr
    sender_id = added.stdout.splitlines()[-1]
    assert SenderName.objects.get(public_id=uuid.UUID(sender_id)).status == "PENDING"

    approved = manage("approve_sender", sender_id)
    assert approved.returncode == 0 and approved.stdout.splitlines()[-1] == "APPROVED"
    rejected = manage("reject_sender", sender_id, "--reason", "Trademark dispute")
    assert rejected.returncode == 0 and rejected.stdout.splitlines()[-1] == "REJECTED"
    assert SenderName.objects.get().status_reason == "Trademark dispute"

    assert_one_line_error(manage("add_sender", "proc-co", "X", "--type", "fax"), "Unknown sender type")
    assert_one_line_error(manage("approve_sender", "not-a-uuid"), "no sender name with id 'not-a-uuid'")
    assert_one_line_error(manage("reject_sender", sender_id), "--reason")
    assert SenderName.objects.count() == 1
