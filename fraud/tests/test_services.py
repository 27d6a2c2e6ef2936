"""The writes behind the API and the admin: a lift that rolls back changes nothing, and the safe list is kept
through services that validate, audit and tell every process's cache."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from fraud.models import FraudBlock, SafeListEntry
from fraud.services import fraud_block_lift, fraud_blocks_purge, safe_list_add, safe_list_remove
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


def test_the_purge_deletes_blocks_ended_or_lifted_past_their_retention_and_keeps_the_rest(workspace, settings):
    settings.FRAUD_BLOCK_RETENTION_DAYS = 90
    now = timezone.now()

    def block(*, created: float, ends: float, lifted: float | None = None) -> FraudBlock:
        """Days before now (negative: ahead)."""
        return FraudBlockFactory(
            workspace=workspace,
            created_at=now - timedelta(days=created),
            ends_at=now - timedelta(days=ends),
            lifted_at=None if lifted is None else now - timedelta(days=lifted),
        )

    ended_long_ago = block(created=92, ends=91)
    lifted_long_ago = block(created=100, ends=70, lifted=95)  # its end would be within, its lift is not
    ended_within = block(created=90, ends=89)
    lifted_within = block(created=100, ends=70, lifted=89)
    active = block(created=0.01, ends=-1)

    assert fraud_blocks_purge(now=now) == 2

    assert set(FraudBlock.objects.values_list("pk", flat=True)) == {ended_within.pk, lifted_within.pk, active.pk}
    assert not FraudBlock.objects.filter(pk__in=[ended_long_ago.pk, lifted_long_ago.pk]).exists()


def test_the_purge_never_keeps_blocks_for_less_than_the_api_lists_and_escalation_remembers(workspace, settings):
    settings.FRAUD_BLOCK_RETENTION_DAYS = 1
    now = timezone.now()
    kept = FraudBlockFactory(workspace=workspace, created_at=now - timedelta(days=30), ends_at=now - timedelta(days=29))
    gone = FraudBlockFactory(workspace=workspace, created_at=now - timedelta(days=33), ends_at=now - timedelta(days=32))

    assert fraud_blocks_purge(now=now) == 1

    assert list(FraudBlock.objects.values_list("pk", flat=True)) == [kept.pk]  # 31 days, not 1
    assert not FraudBlock.objects.filter(pk=gone.pk).exists()
