"""The fraud guard's conversion rules, run from beat over sessions (otp.fraudrules, API.md section 13).

Sessions are seeded at known ages: converted (APPROVED), unconverted (older than 120 s and not approved),
or not judged yet (younger, not approved). Each test would fail without the part of the rule it names.
"""

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from fraud import guard
from fraud.models import FraudBlock, SafeListEntry
from otp import fraudrules
from otp.fraudrules import fraud_rules_run
from otp.tasks import FRAUD_BLOCKS_MIRROR_TASK, FRAUD_RULES_TASK
from otp.testmode import reviewer_number_add
from otp.tests.factories import OtpSessionFactory, SmsMessageFactory
from senders.tests.factories import SenderNameFactory
from workspaces.models import Workspace
from workspaces.tests.factories import WorkspaceFactory
from zeckta.celery import app as celery_app

pytestmark = pytest.mark.django_db

RANGE = "+233204123"


def seed(
    sender,
    *,
    count: int,
    approved: int = 0,
    age: timedelta = timedelta(minutes=10),
    dests: list[str] | None = None,
    country: str = "GH",
    with_sms: bool = False,
    **fields,
) -> None:
    """`count` sessions of `sender`'s workspace created `age` ago, the first `approved` of them approved,
    to `dests` (default: the numbers of RANGE in turn)."""
    created_at = timezone.now() - age
    dests = dests or [f"{RANGE}{index:03d}" for index in range(count)]
    for index in range(count):
        values = {
            "sender_name": sender,
            "dest": dests[index],
            "country": country,
            "created_at": created_at,
            "status": "APPROVED" if index < approved else "EXPIRED",
            **fields,
        }
        if with_sms:
            SmsMessageFactory(**{f"session__{name}": value for name, value in values.items()})
        else:
            OtpSessionFactory(**values)


def spread(count: int, offset: int = 0) -> list[str]:
    """Ghanaian mobiles ten to a range: a country's traffic that no range rule looks at."""
    return [f"+23324{(offset + index) // 10:04d}{(offset + index) % 10:03d}" for index in range(count)]


def blocks() -> list[tuple[str, str, str, str, dict]]:
    return [(b.scope, b.value, b.rule, b.mode, b.evidence) for b in FraudBlock.objects.order_by("id")]


# --- range_conversion ------------------------------------------------------------------------------


def test_range_conversion_blocks_a_range_of_twenty_judged_sessions_at_ten_percent(sender):
    seed(sender, count=20, approved=2)

    assert fraud_rules_run(now=timezone.now()) == 1

    assert blocks() == [
        ("range", RANGE, "range_conversion", "enforce", {"sessions": 20, "converted": 2, "numbers": 20})
    ]
    block = FraudBlock.objects.get()
    assert block.workspace == sender.workspace and block.ends_at - block.created_at == timedelta(hours=24)


def test_range_conversion_leaves_a_range_converting_above_its_threshold(sender):
    seed(sender, count=20, approved=3)  # 15 %

    assert fraud_rules_run(now=timezone.now()) == 0 and blocks() == []


def test_range_conversion_counts_only_judged_sessions(sender):
    seed(sender, count=19)
    seed(sender, count=5, age=timedelta(seconds=60), dests=[f"{RANGE}{index:03d}" for index in range(100, 105)])

    assert fraud_rules_run(now=timezone.now()) == 0  # 19 judged: the five younger than 120 s are not yet


def test_range_conversion_looks_only_within_its_window(sender):
    seed(sender, count=20, age=timedelta(hours=25))

    assert fraud_rules_run(now=timezone.now()) == 0


def test_range_conversion_never_counts_test_reviewer_or_safe_listed_numbers(sender):
    workspace = sender.workspace
    seed(sender, count=19)
    seed(sender, count=5, is_test=True, dests=[f"{RANGE}{index:03d}" for index in range(100, 105)])
    reviewer_number_add(workspace=workspace, dest=f"{RANGE}200", code="13579")
    seed(sender, count=1, dests=[f"{RANGE}200"])
    SafeListEntry.objects.create(workspace=workspace, prefix=f"{RANGE}3")
    seed(sender, count=5, dests=[f"{RANGE}{index:03d}" for index in range(300, 305)])

    assert fraud_rules_run(now=timezone.now()) == 0 and blocks() == []


def test_another_workspaces_sessions_never_count(sender):
    other = SenderNameFactory(workspace=WorkspaceFactory(slug="other"), name="ZECKTA")
    seed(sender, count=10)
    seed(other, count=10, dests=[f"{RANGE}{index:03d}" for index in range(10, 20)])

    assert fraud_rules_run(now=timezone.now()) == 0


def test_range_conversion_counts_start_again_after_a_lift(sender):
    workspace = sender.workspace
    seed(sender, count=20, age=timedelta(hours=2))
    assert fraud_rules_run(now=timezone.now()) == 1
    # fraud_block_lift's part (fapi), by hand: the row, then the Redis copy and counts.
    lifted_at = timezone.now() - timedelta(hours=1)
    created_at = lifted_at - timedelta(minutes=5)
    FraudBlock.objects.update(created_at=created_at, ends_at=created_at + timedelta(hours=24), lifted_at=lifted_at)
    guard.block_forget(workspace_id=workspace.pk, scope="range", value=RANGE)

    assert fraud_rules_run(now=timezone.now()) == 0  # its twenty sessions are from before the lift

    seed(sender, count=19, age=timedelta(minutes=30), dests=[f"{RANGE}{index:03d}" for index in range(500, 519)])
    assert fraud_rules_run(now=timezone.now()) == 0  # 19 since the lift
    seed(sender, count=1, age=timedelta(minutes=30), dests=[f"{RANGE}519"])
    assert fraud_rules_run(now=timezone.now()) == 1
    newest = FraudBlock.objects.latest("created_at")
    assert newest.evidence == {"sessions": 20, "converted": 0, "numbers": 20}
    assert newest.ends_at - newest.created_at == timedelta(hours=48)  # blocked again within 7 days: twice


def test_a_target_blocked_already_is_not_blocked_twice(sender):
    seed(sender, count=20)

    assert fraud_rules_run(now=timezone.now()) == 1
    assert fraud_rules_run(now=timezone.now()) == 0 and FraudBlock.objects.count() == 1


def test_a_shadow_workspace_records_shadow_decisions_and_an_off_one_none(sender):
    seed(sender, count=20)
    Workspace.objects.filter(pk=sender.workspace_id).update(fraud_guard_mode="off")
    assert fraud_rules_run(now=timezone.now()) == 0

    Workspace.objects.filter(pk=sender.workspace_id).update(fraud_guard_mode="shadow")
    assert fraud_rules_run(now=timezone.now()) == 1
    assert [b[3] for b in blocks()] == ["shadow"]


def test_each_workspaces_own_numbers_apply(sender):
    Workspace.objects.filter(pk=sender.workspace_id).update(
        fraud_range_conversion_min_sessions=5, fraud_range_conversion_max_percent=20
    )
    seed(sender, count=5, approved=1)

    assert fraud_rules_run(now=timezone.now()) == 1


# --- country_conversion ----------------------------------------------------------------------------------


def test_country_conversion_blocks_a_country_new_to_the_workspace_at_ten_percent(sender):
    seed(sender, count=50, approved=5, dests=spread(50))

    assert fraud_rules_run(now=timezone.now()) == 1

    assert blocks() == [
        ("country", "GH", "country_conversion", "enforce", {"sessions": 50, "converted": 5, "numbers": 50})
    ]
    block = FraudBlock.objects.get()
    assert block.ends_at - block.created_at == timedelta(hours=1)


def test_country_conversion_needs_its_minimum_of_judged_sessions_in_the_hour(sender):
    seed(sender, count=49, dests=spread(49))
    seed(sender, count=10, age=timedelta(hours=2), dests=spread(10, offset=100))  # before the hour

    assert fraud_rules_run(now=timezone.now()) == 0


def test_country_conversion_leaves_a_country_that_never_converted_well(sender):
    """A baseline of at least 50 judged sessions converting below 50 %: this country's low conversion is
    its usual, not an attack."""
    seed(sender, count=60, approved=20, age=timedelta(days=2), dests=spread(60, offset=100), with_sms=True)
    seed(sender, count=50, approved=5, dests=spread(50))

    assert fraud_rules_run(now=timezone.now()) == 0


def test_country_conversion_blocks_a_country_that_converted_well_before(sender):
    seed(sender, count=60, approved=40, age=timedelta(days=2), dests=spread(60, offset=100), with_sms=True)
    seed(sender, count=50, approved=5, dests=spread(50))

    assert fraud_rules_run(now=timezone.now()) == 1
    assert blocks()[0][:3] == ("country", "GH", "country_conversion")


# --- The Redis copy, and beat ------------------------------------------------------------------------------


def test_blocks_mirror_writes_the_active_blocks_and_drops_lifted_ones(sender):
    workspace = sender.workspace
    now = timezone.now()
    block = FraudBlock.objects.create(
        workspace=workspace,
        scope="range",
        value=RANGE,
        rule="range_conversion",
        mode="enforce",
        created_at=now,
        ends_at=now + timedelta(hours=24),
    )
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    key = guard.block_key(workspace.pk, "enforce", "range", RANGE)

    assert guard.blocks_mirror(now=now) == 1
    assert int(client.get(key)) == int(block.ends_at.timestamp() * 1000)
    assert 0 < client.pttl(key) <= 24 * 3600 * 1000

    FraudBlock.objects.filter(pk=block.pk).update(lifted_at=now)
    assert guard.blocks_mirror(now=now) == 0
    assert client.get(key) is None


def test_beat_runs_the_rules_and_the_mirror():
    tasks = {entry["task"]: entry["schedule"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks[FRAUD_RULES_TASK] == django_settings.FRAUD_RULES_INTERVAL_SECONDS == 10
    assert tasks[FRAUD_BLOCKS_MIRROR_TASK] == django_settings.FRAUD_MIRROR_INTERVAL_SECONDS
    assert {FRAUD_RULES_TASK, FRAUD_BLOCKS_MIRROR_TASK} <= set(celery_app.tasks)
    [rules] = [entry for entry in django_settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == FRAUD_RULES_TASK]
    # A slow run (a large day of sessions) drops the runs queued behind it rather than piling them up.
    assert rules["options"]["expires"] == django_settings.FRAUD_RULES_INTERVAL_SECONDS


def test_a_slow_run_holds_the_next_ones_back_and_a_quick_one_does_not(monkeypatch, settings):
    """The rules' scan grows with a day's sessions: however long a run takes, they keep a quarter of a worker."""
    redis_client = guard._redis().client
    redis_client.delete(guard.RULES_PACE_KEY)
    settings.FRAUD_RULES_INTERVAL_SECONDS = 4
    monkeypatch.setattr(fraudrules, "RULES_PACE_FROM_SECONDS", 0.1)
    took = {"seconds": 0.0}
    runs = []

    def run(*, now):  # the rules' own work, as long as the test says
        runs.append(now)
        time.sleep(took["seconds"])
        return 0

    monkeypatch.setattr(fraudrules, "fraud_rules_run", run)
    try:
        now = timezone.now()
        assert fraudrules.fraud_rules_paced_run(now=now) == 0  # quick: nothing held back
        assert fraudrules.fraud_rules_paced_run(now=now) == 0
        took["seconds"] = 1.2  # more than a quarter of the 4 s interval
        assert fraudrules.fraud_rules_paced_run(now=now) == 0
        assert fraudrules.fraud_rules_paced_run(now=now + timedelta(seconds=4)) is None  # within 3 x 1.2 s after it
        assert len(runs) == 3
        assert guard.rules_may_run(now=now + timedelta(seconds=1.2 * 4 + 0.5))  # its length + 3 x it, then free
    finally:
        redis_client.delete(guard.RULES_PACE_KEY)
