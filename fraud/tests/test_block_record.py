"""fraud_block_record: the one home of a block's record and of escalation (API.md section 13)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from fraud.models import FraudBlock
from fraud.services import fraud_block_record
from webhooks.models import WebhookDelivery
from webhooks.services import webhook_endpoint_create
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory

pytestmark = pytest.mark.django_db

EVIDENCE = {"sessions": 11, "converted": 0, "numbers": 11}


@pytest.fixture
def workspace():
    return WorkspaceFactory(slug="guarded")


def record(workspace, *, now, mode="enforce", rule="range_velocity", value="+233204123"):
    scope = "range" if rule.startswith("range") else "country"
    return fraud_block_record(
        workspace=workspace, scope=scope, value=value, rule=rule, mode=mode, evidence=EVIDENCE, now=now
    )


def hours(block: FraudBlock) -> float:
    return (block.ends_at - block.created_at).total_seconds() / 3600


def test_a_first_block_lasts_its_rules_time_and_keeps_its_evidence(workspace):
    now = timezone.now()

    block = record(workspace, now=now)

    assert hours(block) == 1 and block.created_at == now and block.lifted_at is None
    assert FraudBlock.objects.get().evidence == EVIDENCE
    assert hours(record(workspace, now=now, rule="range_conversion", value="+233204124")) == 24


def test_a_target_blocked_again_within_the_memory_is_blocked_twice_as_long_up_to_the_most(workspace):
    Workspace.objects.filter(pk=workspace.pk).update(fraud_block_max_seconds=5 * 3600)
    workspace.refresh_from_db()
    now = timezone.now()
    lengths = []
    for _ in range(4):
        block = record(workspace, now=now)
        lengths.append(hours(block))
        now = block.ends_at + timedelta(minutes=1)  # blocked again a minute after the last one ended

    assert lengths == [1, 2, 4, 5]


def test_escalation_forgets_a_block_that_ended_before_the_memory(workspace):
    now = timezone.now()
    first = record(workspace, now=now)

    later = first.ends_at + timedelta(days=7, minutes=1)

    assert hours(record(workspace, now=later)) == 1


def test_a_lifted_block_escalates_from_its_lift(workspace):
    now = timezone.now()
    first = record(workspace, now=now)
    FraudBlock.objects.filter(pk=first.pk).update(lifted_at=now + timedelta(minutes=5))

    assert hours(record(workspace, now=now + timedelta(minutes=10))) == 2


def test_an_active_block_of_that_mode_is_not_recorded_twice(workspace):
    now = timezone.now()
    record(workspace, now=now)

    assert record(workspace, now=now + timedelta(minutes=1)) is None
    assert record(workspace, now=now + timedelta(minutes=1), rule="range_conversion") is None
    assert record(workspace, now=now + timedelta(minutes=1), mode="shadow") is not None  # each mode its own
    assert FraudBlock.objects.count() == 2


def test_each_block_is_one_fraud_blocked_event_for_the_live_endpoints(workspace, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.internal"]
    live = webhook_endpoint_create(workspace=workspace, url="http://hooks.internal/live", events=["fraud.blocked"])
    webhook_endpoint_create(workspace=workspace, url="http://hooks.internal/test", events=["fraud.blocked"], test=True)

    block = record(workspace, now=timezone.now())

    [delivery] = WebhookDelivery.objects.all()
    assert delivery.endpoint_id == live.endpoint.pk and delivery.event_type == "fraud.blocked"
    assert f'"blockId":"{block.public_id}"' in delivery.body and '"evidence":{"sessions":11' in delivery.body
