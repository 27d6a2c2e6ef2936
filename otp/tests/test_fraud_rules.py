"""The fraud guard's conversion rules, run from beat over sessions (otp.fraudrules, API.md section 13).

Sessions are seeded at known ages: converted (APPROVED), unconverted (older than 120 s and not approved),
or not judged yet (younger, not approved). Each test would fail without the part of the rule it names.
"""

import random
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from fraud import guard
from fraud.models import FraudBlock, SafeListEntry
from otp import fraudrules
from otp.fraudrules import fraud_rules_run
from otp.models import OtpSession
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


def full_run(*, now: datetime) -> int:
    """A run that reads the rules' whole windows: the sessions a test seeds in the past after a run are read
    by a full run only (a bounded run reads what moved since the last run: see the tests of it below)."""
    guard._redis().client.delete(guard.RULES_EDGE_KEY)
    return fraud_rules_run(now=now)


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
    assert full_run(now=timezone.now()) == 0  # 19 since the lift
    seed(sender, count=1, age=timedelta(minutes=30), dests=[f"{RANGE}519"])
    assert full_run(now=timezone.now()) == 1
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


# --- range_conversion, bounded: a run reads only what moved since the last one -------------------------------

SECOND = timedelta(seconds=1)


def session_at(sender, *, created_at: datetime, dest: str, approved_at: datetime | None = None) -> None:
    """One session as a request makes it: created at `created_at` (the test inserts it then), approved at
    `approved_at` if given."""
    OtpSessionFactory(
        sender_name=sender,
        dest=dest,
        country="GH",
        created_at=created_at,
        status="APPROVED" if approved_at else "EXPIRED",
        verified_at=approved_at,
    )


@pytest.fixture
def reads(monkeypatch):
    """Which statement each run of range_conversion read: "full" or "bounded"."""
    seen: list[str] = []
    rows = fraudrules._rows

    def spy(sql, params):
        if sql is fraudrules.RANGE_CONVERSION_SQL:
            seen.append("full")
        elif sql is fraudrules.RANGE_CONVERSION_BOUNDED_SQL:
            seen.append("bounded")
        return rows(sql, params)

    monkeypatch.setattr(fraudrules, "_rows", spy)
    return seen


def full_rows(now: datetime) -> list[tuple]:
    """What a full run of range_conversion would trip at `now` (the blocks recorded so far left out)."""
    with connection.cursor() as cursor:
        cursor.execute(fraudrules.RANGE_CONVERSION_SQL, {"now": now, "scope": "range"})
        return sorted(cursor.fetchall())


def test_a_bounded_run_trips_a_range_on_a_session_judged_since_the_last_run(sender, reads):
    t0 = timezone.now()
    seed(sender, count=19, age=timedelta(hours=1))
    assert fraud_rules_run(now=t0) == 0
    session_at(sender, created_at=t0 + 5 * SECOND, dest=f"{RANGE}519")

    assert fraud_rules_run(now=t0 + 60 * SECOND) == 0  # 60 s old: not judged yet
    assert full_rows(t0 + 126 * SECOND) != []
    assert fraud_rules_run(now=t0 + 126 * SECOND) == 1

    assert reads == ["full", "bounded", "bounded"]
    assert blocks() == [
        ("range", RANGE, "range_conversion", "enforce", {"sessions": 20, "converted": 0, "numbers": 20})
    ]


def test_a_bounded_run_counts_only_the_ranges_numbers_between_its_bounds(sender, reads):
    """+2332041230001 sorts between +233204123000 and +233204123999 but is of the range +23320412300."""
    t0 = timezone.now()
    seed(sender, count=18, age=timedelta(hours=1))
    seed(sender, count=1, age=timedelta(hours=1), dests=[f"{RANGE}0001"])
    assert fraud_rules_run(now=t0) == 0
    session_at(sender, created_at=t0 + 5 * SECOND, dest=f"{RANGE}519")

    assert fraud_rules_run(now=t0 + 126 * SECOND) == 0  # 19 of the range

    assert reads == ["full", "bounded"] and full_rows(t0 + 126 * SECOND) == []


def test_a_bounded_run_trips_a_range_on_an_approval_before_the_session_is_judged(sender, reads):
    """Nineteen unconverted, then a session approved at 15 s: twenty judged sessions, 5 % converted."""
    t0 = timezone.now()
    seed(sender, count=19, age=timedelta(hours=1))
    assert fraud_rules_run(now=t0) == 0
    session_at(sender, created_at=t0 + 5 * SECOND, dest=f"{RANGE}519", approved_at=t0 + 20 * SECOND)

    assert fraud_rules_run(now=t0 + 30 * SECOND) == 1

    assert reads == ["full", "bounded"]
    assert blocks()[0][4] == {"sessions": 20, "converted": 1, "numbers": 20}


def test_a_bounded_run_trips_a_range_whose_approvals_leave_the_window(sender, reads):
    """Twenty unconverted and three converted (13 %): the three, the oldest, age out of the 24 h; no session
    becomes judged meanwhile."""
    t0 = timezone.now()
    seed(sender, count=20, age=timedelta(hours=1))
    seed(
        sender,
        count=3,
        approved=3,
        age=timedelta(hours=24) - 60 * SECOND,
        dests=[f"{RANGE}{i}" for i in range(600, 603)],
    )
    assert fraud_rules_run(now=t0) == 0

    assert fraud_rules_run(now=t0 + 30 * SECOND) == 0  # still in the window
    assert fraud_rules_run(now=t0 + 90 * SECOND) == 1

    assert reads == ["full", "bounded", "bounded"]
    assert blocks()[0][4] == {"sessions": 20, "converted": 0, "numbers": 20}


def test_a_bounded_run_trips_a_range_again_once_its_block_ends(sender, reads):
    t0 = timezone.now()
    seed(sender, count=20, age=timedelta(hours=1))
    FraudBlock.objects.create(
        workspace=sender.workspace,
        scope="range",
        value=RANGE,
        rule="range_velocity",
        mode="enforce",
        created_at=t0 - timedelta(minutes=59, seconds=30),
        ends_at=t0 + 30 * SECOND,
    )
    assert fraud_rules_run(now=t0) == 0  # blocked already
    assert fraud_rules_run(now=t0 + 20 * SECOND) == 0

    assert fraud_rules_run(now=t0 + 40 * SECOND) == 1

    assert reads == ["full", "bounded", "bounded"]
    assert [block[2] for block in blocks()] == ["range_velocity", "range_conversion"]


def test_a_change_of_a_workspaces_numbers_or_safe_list_makes_the_next_run_full(sender, reads):
    """Nothing moves, but the verdict does: twenty sessions, five of them safe-listed; then not."""
    t0 = timezone.now()
    seed(sender, count=20, age=timedelta(hours=1))
    entry = SafeListEntry.objects.create(workspace=sender.workspace, prefix=f"{RANGE}00")
    Workspace.objects.filter(pk=sender.workspace_id).update(fraud_range_conversion_min_sessions=25)
    assert fraud_rules_run(now=t0) == 0
    assert fraud_rules_run(now=t0 + 10 * SECOND) == 0

    Workspace.objects.filter(pk=sender.workspace_id).update(fraud_range_conversion_min_sessions=20)
    assert fraud_rules_run(now=t0 + 20 * SECOND) == 0  # 10 counted: 00x are safe
    assert fraud_rules_run(now=t0 + 30 * SECOND) == 0
    entry.delete()
    assert fraud_rules_run(now=t0 + 40 * SECOND) == 1

    assert reads == ["full", "bounded", "full", "bounded", "full"]


def test_a_bounded_run_reads_only_what_moved_and_a_lost_or_backward_edge_makes_a_run_full(sender, reads, settings):
    """Sessions written into the past after a run (no request does that) are read by the next full run: the
    first after FRAUD_RULES_FULL_EVERY_SECONDS (the edge expires), after Redis lost it, or a clock moved back."""
    settings.FRAUD_RULES_FULL_EVERY_SECONDS = 600
    t0 = timezone.now()
    assert fraud_rules_run(now=t0) == 0
    assert 590_000 < guard._redis().client.pttl(guard.RULES_EDGE_KEY) <= 600_000
    seed(sender, count=20, age=timedelta(hours=1))

    assert fraud_rules_run(now=t0 + 10 * SECOND) == 0
    assert fraud_rules_run(now=t0 + 5 * SECOND) == 1  # before the last run: full

    guard._redis().client.delete(guard.RULES_EDGE_KEY)
    assert fraud_rules_run(now=t0 + 20 * SECOND) == 0  # full, and blocked already
    assert reads == ["full", "bounded", "full", "full"]

    settings.FRAUD_RULES_FULL_EVERY_SECONDS = 0  # full only when it must be
    guard._redis().client.delete(guard.RULES_EDGE_KEY)
    assert fraud_rules_run(now=t0 + 30 * SECOND) == 0
    assert guard._redis().client.pttl(guard.RULES_EDGE_KEY) == -1


def test_bounded_runs_trip_what_full_runs_would_trip_as_sessions_come_age_and_leave(sender, reads):
    """A simulated half hour of random traffic over a few ranges of two workspaces with numbers of their own,
    every 10 s: sessions created as the clock reaches them, approved (or not) a while later, leaving a window of
    10 or 5 minutes; blocks of 3 or 2 minutes that end, a few lifted. Before each run the full statement says
    what trips; the run (bounded but for the first) records exactly that, and afterwards the full statement
    finds nothing."""
    other = SenderNameFactory(workspace=WorkspaceFactory(slug="other"), name="ZECKTA")
    for workspace_id, window, judged_after, block, minimum, percent in (
        (sender.workspace_id, 600, 120, 180, 6, 30),
        (other.workspace_id, 300, 60, 120, 4, 25),
    ):
        Workspace.objects.filter(pk=workspace_id).update(
            fraud_range_conversion_window_seconds=window,
            fraud_conversion_judged_after_seconds=judged_after,
            fraud_range_conversion_block_seconds=block,
            fraud_range_conversion_min_sessions=minimum,
            fraud_range_conversion_max_percent=percent,
            fraud_country_conversion_min_sessions=10**6,
        )
    rng = random.Random(20)
    ranges = [f"+2332041{index:02d}" for index in range(6)]
    start = timezone.now() - timedelta(minutes=40)
    step = 10 * SECOND
    pending: list[tuple[datetime, Any, str, datetime | None]] = []  # (created, sender, dest, approved) to come
    for index in range(240):
        created = start + rng.uniform(0, 1800) * SECOND
        convert = rng.random() < (0.05 if index % 6 < 3 else 0.5)
        approved = created + rng.uniform(3, 200) * SECOND if convert else None
        dest = f"{rng.choice(ranges)}{rng.randrange(1000):03d}"
        pending.append((created, rng.choice([sender, other]), dest, approved))
    pending.sort(key=lambda session: session[0])
    approvals: list[tuple[datetime, int]] = []
    tripped_total = lifted = 0
    now = start
    while now < start + timedelta(minutes=32):
        now += step
        while pending and pending[0][0] <= now:
            created, by, dest, approved = pending.pop(0)
            session = OtpSessionFactory(sender_name=by, dest=dest, created_at=created)
            if approved is not None:
                approvals.append((approved, session.pk))
        for approved, pk in [approval for approval in approvals if approval[0] <= now]:
            OtpSession.objects.filter(pk=pk).update(status="APPROVED", verified_at=approved)
            approvals.remove((approved, pk))
        if round((now - start) / step) % 25 == 0:  # a lift, by hand as in the lift test above
            active = FraudBlock.objects.filter(lifted_at=None, ends_at__gt=now).order_by("-id").first()
            if active is not None:
                FraudBlock.objects.filter(pk=active.pk).update(lifted_at=now)
                lifted += 1
        expected = full_rows(now)
        before = FraudBlock.objects.count()
        fraud_rules_run(now=now)
        new = FraudBlock.objects.order_by("id")[before:]
        recorded = [
            (b.workspace_id, b.value, b.evidence["sessions"], b.evidence["converted"], b.evidence["numbers"])
            for b in new
        ]
        assert sorted(recorded) == expected, now
        assert full_rows(now) == []
        tripped_total += len(expected)
    assert reads.count("full") == 1 and reads.count("bounded") > 150
    assert tripped_total >= 5 and lifted >= 2
    assert {block.workspace_id for block in FraudBlock.objects.all()} == {sender.workspace_id, other.workspace_id}


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
