"""The writes behind the API and the admin: a lift that rolls back changes nothing, and the safe list is kept
through services that validate, audit and tell every process's cache."""

import pytest
from django.db import transaction

from fraud.models import FraudBlock, SafeListEntry
from fraud.services import fraud_block_lift, safe_list_add, safe_list_remove
from fraud.tests.factories import FraudBlockFactory
from workspaces.tests.helpers import events, the_event
from zeckta.errors import ValidationFailed
from zeckta.localcache import LocalCache

pytestmark = pytest.mark.django_db

ADDED, REMOVED = "safe_list.added", "safe_list.removed"


class Rollback(Exception):
    pass


def test_a_lift_rolled_back_with_its_transaction_leaves_the_block_in_force(
    workspace, forgotten, django_capture_on_commit_callbacks
):
    block = FraudBlockFactory(workspace=workspace)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Rollback):
        with transaction.atomic():
            fraud_block_lift(workspace=workspace, block_id=block.public_id, actor="ops")
            raise Rollback

    block.refresh_from_db()
    assert block.lifted_at is None and events("fraud_block.lifted") == [] and forgotten == []


def test_a_lift_stands_when_redis_cannot_forget_the_block_now(
    workspace, monkeypatch, django_capture_on_commit_callbacks
):
    """The guard's mirror drops the key later (fraud.guard.blocks_mirror); the operator's lift is not undone."""

    def unreachable(**target: str) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr("fraud.services.block_forget", unreachable)
    block = FraudBlockFactory(workspace=workspace)

    with django_capture_on_commit_callbacks(execute=True):
        lifted = fraud_block_lift(workspace=workspace, block_id=block.public_id, actor="ops")

    assert lifted.lifted_at is not None and FraudBlock.objects.get(pk=block.pk).lifted_by == "ops"


def test_safe_list_add_keeps_the_prefix_audits_it_and_tells_the_caches(workspace):
    probe: LocalCache[int] = LocalCache("safe-list probe")
    probe.get("key", lambda: 1)

    entry = safe_list_add(workspace=workspace, prefix=" +23320 ", note="Head office phones", actor="ops")

    assert (entry.workspace, entry.prefix, entry.note, entry.created_by) == (
        workspace,
        "+23320",
        "Head office phones",
        "ops",
    )
    assert list(SafeListEntry.objects.values_list("prefix", flat=True)) == ["+23320"]
    event = the_event(ADDED)
    assert (event.actor, event.workspace, event.target, event.detail) == (
        "ops",
        workspace,
        "+23320",
        {"note": "Head office phones"},
    )
    assert probe._entries == {}  # every local cache forgotten: the guard reads the new list at once here


@pytest.mark.parametrize("prefix", ["23320", "+", "+2332a", "+1234567890123456", "", "+233 20"])
def test_safe_list_add_refuses_what_is_not_a_number_or_prefix_in_e164_form(workspace, prefix):
    with pytest.raises(ValidationFailed) as refused:
        safe_list_add(workspace=workspace, prefix=prefix, actor="ops")

    assert refused.value.errors == {
        "prefix": ["A number or prefix in E.164 form: + and 1 to 15 digits, such as +23320."]
    }
    assert not SafeListEntry.objects.exists() and events(ADDED) == []


def test_safe_list_add_refuses_a_prefix_the_list_already_holds_but_another_workspace_may_hold_it(workspace):
    safe_list_add(workspace=workspace, prefix="+23320", actor="ops")

    with pytest.raises(ValidationFailed, match=r"already holds \+23320"):
        safe_list_add(workspace=workspace, prefix="+23320", actor="ops")

    other = FraudBlockFactory().workspace
    safe_list_add(workspace=other, prefix="+23320", actor="ops")
    assert SafeListEntry.objects.count() == 2 and len(events(ADDED)) == 2


def test_safe_list_remove_audits_once(workspace):
    entry = safe_list_add(workspace=workspace, prefix="+233201234567", note="CEO", actor="ops")

    safe_list_remove(entry=entry, actor="ops")
    safe_list_remove(entry=entry, actor="ops")  # already gone: nothing more to record

    assert not SafeListEntry.objects.exists()
    event = the_event(REMOVED)
    assert (event.actor, event.workspace, event.target, event.detail) == (
        "ops",
        workspace,
        "+233201234567",
        {"note": "CEO"},
    )
